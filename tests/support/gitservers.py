"""Real git repositories and real servers for them on 127.0.0.1, for the agent's tests.

- `Upstream`: a bare repository served to the agent, plus a work tree to commit into it.
- `start_git_daemon(base)`: `git daemon` over the git:// protocol.
- `start_http_git_server(base)`: `git http-backend` behind a small HTTP server, with paths that
  redirect (`/redirect/...`), demand a password (`/auth/...`), serve only to Basic auth with
  one of `basic_users` (`/basic/...`) or never answer (`/hang/...`). With `lfs_backend` set it
  also fronts a real LFS server (giftless) for each repository's default endpoint
  (`/<mode>/<repo>/info/lfs`) and its objects (`/<mode>/lfs/...`), on the same terms, and it
  records the Authorization header of every request it gets (`seen`).
- `start_silent_server()`: accepts TCP connections and never says a word.
- `start_gated_relay(port)`: a TCP relay to a git server that holds connections until opened,
  so that a job can be kept running for as long as a test needs and then allowed to finish.
- `serve_in_background(server)`: runs any of the tests' own HTTP servers in a thread.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import BaseServer

# Git as the tests run it: no config from the machine, fixed identity.
TEST_GIT_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "HOME": "/nonexistent",
    "LC_ALL": "C",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_ALLOW_PROTOCOL": "file",
}


def git(*args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None) -> str:
    """Run git for the test's own set-up and return its stdout."""
    completed = subprocess.run(
        ["git", *map(str, args)],
        cwd=cwd,
        env=TEST_GIT_ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(f"git {' '.join(map(str, args))} failed:\n{completed.stderr}")
    return completed.stdout


class Upstream:
    """A bare repository `<base>/<name>.git` and a work tree that pushes into it."""

    def __init__(self, base: Path, name: str, branch: str = "main") -> None:
        self.name = f"{name}.git"
        self.bare = base / self.name
        self.work = base.parent / f"{name}-work"
        self.branch = branch
        self._current = branch
        git("init", "--quiet", "--bare", f"--initial-branch={branch}", self.bare)
        git("init", "--quiet", f"--initial-branch={branch}", self.work)
        git("remote", "add", "origin", self.bare, cwd=self.work)

    def commit(
        self, files: dict[str, str | bytes], message: str = "change", *, branch: str | None = None
    ) -> str:
        """Write `files` (path -> content), commit and push; return the new commit id."""
        branch = branch or self.branch
        if branch != self._current:
            exists = git("branch", "--list", branch, cwd=self.work).strip()
            git("checkout", "--quiet", *(() if exists else ("-b",)), branch, cwd=self.work)
            self._current = branch
        for relative, content in files.items():
            path = self.work / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        return self.head(branch)

    def symlink(self, relative: str, points_to: str, message: str = "add a symlink") -> str:
        path = self.work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(points_to)
        return self.commit({}, message)

    def head(self, branch: str | None = None) -> str:
        return git("rev-parse", f"refs/heads/{branch or self.branch}", cwd=self.bare).strip()

    def rewrite_history(self, files: dict[str, str]) -> str:
        """Replace the branch with an unrelated commit (a force-push that diverges)."""
        git("checkout", "--quiet", "--orphan", "rewritten", cwd=self.work)
        git("rm", "-r", "--quiet", "--cached", ".", cwd=self.work)
        for relative, content in files.items():
            (self.work / relative).write_text(content)
        git("add", *files, cwd=self.work)
        git("commit", "--quiet", "-m", "rewritten", cwd=self.work)
        git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{self.branch}", cwd=self.work)
        git("checkout", "--quiet", "-B", self.branch, cwd=self.work)
        self._current = self.branch
        return self.head()

    def set_config(self, key: str, value: str) -> None:
        """Set a key in the served (bare) repository's own config."""
        git("config", "--file", self.bare / "config", key, value)


def git_processes_mentioning(token: str) -> list[int]:
    """Pids of live processes whose command line contains `token` (a unique URL or path)."""
    found = subprocess.run(["pgrep", "-f", token], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_in_background(server: BaseServer) -> threading.Thread:
    """Runs `server.serve_forever()` in a daemon thread. The loop looks for `shutdown()` every
    0.05 s instead of the default 0.5 s, which every stop of a server would otherwise wait out."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    return thread


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class GitDaemon:
    """A running `git daemon`; `url("x.git")` is how the agent reaches `<base>/x.git`."""

    base_url: str
    process: subprocess.Popen[bytes]

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_git_daemon(base_path: Path) -> GitDaemon:
    """Serve every repository under `base_path` over git:// on 127.0.0.1 (a free port)."""
    for _ in range(5):
        port = free_port()
        process = subprocess.Popen(
            [
                "git", "daemon", "--reuseaddr", f"--base-path={base_path}", "--export-all",
                "--listen=127.0.0.1", f"--port={port}", "--informative-errors", str(base_path),
            ],
            env=TEST_GIT_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for_port(port, timeout=5)
        except OSError:
            process.kill()
            process.wait()
            continue
        return GitDaemon(base_url=f"git://127.0.0.1:{port}", process=process)
    raise RuntimeError("git daemon did not start")


@dataclass
class HttpGitServer:
    """`git http-backend` over HTTP. Paths: /git/<repo>, /redirect/<repo>, /auth/<repo>, /hang/<x>,
    and /progress-bomb/<repo>, whose fetches get only hostile progress lines."""

    base_url: str
    server: ThreadingHTTPServer
    release_hung: threading.Event = field(default_factory=threading.Event)
    # user name -> password accepted on /basic/ paths; change it to rotate or revoke.
    basic_users: dict[str, str] = field(default_factory=dict)
    # Seconds each /basic/ request waits before it is served, so that a test can look at the
    # processes of a clone while it runs.
    basic_delay: list[float] = field(default_factory=lambda: [0.0])
    # The user names that /basic/ requests authenticated as, in order.
    basic_logins: list[str] = field(default_factory=list)
    # (method, path, Authorization header or None) of every request, in order.
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)
    # The LFS server's endpoint (`LfsServer.endpoint()`) that LFS paths are passed on to.
    lfs_backend: list[str] = field(default_factory=lambda: [""])
    # Where object hrefs of batch answers point: "" for this server's `/<mode>/lfs`; another
    # server's `/git/lfs` for objects on another host, `/basic/lfs-redirect` for a redirect.
    lfs_href_base: list[str] = field(default_factory=lambda: [""])
    lfs_redirect_to: list[str] = field(default_factory=lambda: [""])
    # Headers put in every download action ("{authorization}": the batch request's own).
    lfs_action_header: dict[str, str] = field(default_factory=dict)

    def authorizations(self) -> list[str]:
        """The Authorization headers this server was sent."""
        return [header for _, _, header in self.seen if header]

    @property
    def host(self) -> str:
        """`127.0.0.1:port`, as a credential's host names it."""
        return self.base_url.removeprefix("http://")

    def url(self, mode: str, name: str) -> str:
        return f"{self.base_url}/{mode}/{name}"

    def stop(self) -> None:
        self.release_hung.set()
        self.server.shutdown()
        self.server.server_close()


def start_http_git_server(base_path: Path) -> HttpGitServer:
    release = threading.Event()
    basic_users: dict[str, str] = {}
    basic_delay = [0.0]
    basic_logins: list[str] = []
    seen: list[tuple[str, str, str | None]] = []
    lfs_backend = [""]
    lfs_href_base = [""]
    lfs_redirect_to = [""]
    lfs_action_header: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._route()

        def do_POST(self) -> None:
            self._route()

        def _route(self) -> None:
            seen.append((self.command, self.path, self.headers.get("Authorization")))
            path, _, query = self.path.partition("?")
            mode, _, rest = path.lstrip("/").partition("/")
            if mode in ("basic", "git") and lfs_backend[0] and self._is_lfs(rest):
                if mode == "basic" and not self._basic_user():
                    self._unauthorised()
                    return
                self._lfs(mode, rest, query)
                return
            if mode == "hang":
                release.wait(120)
                return
            if mode == "redirect":
                self.send_response(301)
                self.send_header("Location", f"/git/{rest}" + (f"?{query}" if query else ""))
                self.end_headers()
                return
            if mode == "auth":
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.end_headers()
                return
            if mode == "basic":
                if not self._basic_user():
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                time.sleep(basic_delay[0])
                self._http_backend("/" + rest, query)
                return
            if mode == "progress-bomb" and self.command == "POST":
                self._progress_bomb()
                return
            if mode not in ("git", "progress-bomb"):
                self.send_error(404)
                return
            self._http_backend("/" + rest, query, v0_only=mode == "progress-bomb")

        @staticmethod
        def _is_lfs(rest: str) -> bool:
            return "/info/lfs/" in rest or rest.startswith(("lfs/", "lfs-redirect/"))

        def _unauthorised(self) -> None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _lfs(self, mode: str, rest: str, query: str) -> None:
            """The batch API and objects of the LFS server behind, hrefs made to point here (or
            wherever `lfs_href_base` says)."""
            if rest.startswith("lfs-redirect/"):
                self.send_response(302)
                location = lfs_redirect_to[0] + rest.removeprefix("lfs-redirect")
                self.send_header("Location", location + (f"?{query}" if query else ""))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            backend = lfs_backend[0]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if rest.startswith("lfs/"):
                target = backend + rest.removeprefix("lfs")
            else:
                target = backend + "/" + rest.partition("/info/lfs/")[2]
            target += f"?{query}" if query else ""
            request = urllib.request.Request(target, data=body, method=self.command)
            for name in ("Accept", "Content-Type"):
                if self.headers.get(name):
                    request.add_header(name, self.headers[name])
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    status, payload, kind = answer.status, answer.read(), answer.headers
            except urllib.error.HTTPError as error:
                status, payload, kind = error.code, error.read(), error.headers
            if "/info/lfs/" in rest and status == 200:
                payload = self._rewritten(json.loads(payload), backend, mode)
            self.send_response(status)
            self.send_header("Content-Type", kind.get("Content-Type", "application/octet-stream"))
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _rewritten(self, answer: dict, backend: str, mode: str) -> bytes:
            href_base = lfs_href_base[0] or f"http://{self.headers['Host']}/{mode}/lfs"
            extra = {
                name: value.replace("{authorization}", self.headers.get("Authorization", ""))
                for name, value in lfs_action_header.items()
            }
            for item in answer.get("objects", []):
                action = (item.get("actions") or {}).get("download")
                if action:
                    action["href"] = href_base + action["href"].removeprefix(backend)
                    action["header"] = {**(action.get("header") or {}), **extra}
            return json.dumps(answer).encode()

        def _basic_user(self) -> str:
            scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "basic":
                return ""
            try:
                user, _, password = base64.b64decode(encoded).decode().partition(":")
            except ValueError:
                return ""
            if user in basic_users and hmac.compare_digest(basic_users[user], password):
                basic_logins.append(user)
                return user
            return ""

        def _progress_bomb(self) -> None:
            # A fetch answered with nothing but progress lines whose counts have 5,000 digits,
            # far more of them than a pipe holds, then the end of the connection.
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-git-upload-pack-result")
            self.end_headers()
            line = b"\x02Counting objects: 100% (" + b"9" * 5000 + b"/1)\r"
            bomb = _pkt_line(b"NAK\n") + _pkt_line(line) * 400
            with contextlib.suppress(OSError):
                self.wfile.write(bomb)

        def _http_backend(self, path_info: str, query: str, v0_only: bool = False) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            env = {
                **TEST_GIT_ENV,
                "GIT_PROJECT_ROOT": str(base_path),
                "GIT_HTTP_EXPORT_ALL": "1",
                "PATH_INFO": path_info,
                "QUERY_STRING": query,
                "REQUEST_METHOD": self.command,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(length),
                "GIT_PROTOCOL": "" if v0_only else self.headers.get("Git-Protocol", ""),
                "REMOTE_ADDR": "127.0.0.1",
            }
            completed = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
            )
            head, _, payload = completed.stdout.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    serve_in_background(server)
    host, port = server.server_address[:2]
    return HttpGitServer(
        base_url=f"http://{host}:{port}",
        server=server,
        release_hung=release,
        basic_users=basic_users,
        basic_delay=basic_delay,
        basic_logins=basic_logins,
        seen=seen,
        lfs_backend=lfs_backend,
        lfs_href_base=lfs_href_base,
        lfs_redirect_to=lfs_redirect_to,
        lfs_action_header=lfs_action_header,
    )


def _pkt_line(data: bytes) -> bytes:
    return f"{len(data) + 4:04x}".encode() + data


@dataclass
class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers; `port` to point git at."""

    port: int
    sock: socket.socket
    connections: list[socket.socket] = field(default_factory=list)

    def stop(self) -> None:
        self.sock.close()
        for connection in self.connections:
            connection.close()


def start_silent_server() -> SilentServer:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = SilentServer(port=sock.getsockname()[1], sock=sock)

    def accept_forever() -> None:
        while True:
            try:
                connection, _ = sock.accept()
            except OSError:
                return
            server.connections.append(connection)

    threading.Thread(target=accept_forever, daemon=True).start()
    return server


class GatedRelay:
    """A TCP relay on 127.0.0.1 to a git server; connections wait at the gate until it opens.

    `open()` lets new connections through and, with `waiting=True`, the ones already waiting;
    with `waiting=False` those stay stalled forever (a run that hangs while a later one works).
    With `rate` (bytes per second) the server's answers trickle, so that a transfer takes a while.
    """

    def __init__(self, target_port: int, *, rate: int | None = None) -> None:
        self.target_port = target_port
        self.rate = rate
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._open = False
        self._release_waiting = True
        self._changed = threading.Condition()
        self._stopped = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def open(self, *, waiting: bool = True) -> None:
        with self._changed:
            self._open = True
            self._release_waiting = waiting
            self._changed.notify_all()

    def wait_for_connections(self, count: int = 1, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.accepted < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"only {self.accepted} connection(s) reached the relay")
                self._changed.wait(left)

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
            sockets = [self.sock, *self._sockets]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept_forever(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with self._changed:
                self.accepted += 1
                self._sockets.append(client)
                arrived_open = self._open
                self._changed.notify_all()
            threading.Thread(target=self._serve, args=(client, arrived_open), daemon=True).start()

    def _serve(self, client: socket.socket, arrived_open: bool) -> None:
        with self._changed:
            while not self._stopped and not (
                arrived_open or (self._open and self._release_waiting)
            ):
                self._changed.wait()
            if self._stopped:
                return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._changed:
            self._sockets.append(upstream)
        threading.Thread(target=_pump, args=(upstream, client, self.rate), daemon=True).start()
        _pump(client, upstream)


def _pump(source: socket.socket, sink: socket.socket, rate: int | None = None) -> None:
    """Copy bytes one way until EOF (at most `rate` bytes a second), then pass the EOF on."""
    chunk = 65536 if rate is None else max(1, rate // 10)
    try:
        while data := source.recv(chunk):
            sink.sendall(data)
            if rate is not None:
                time.sleep(len(data) / rate)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def start_gated_relay(target_port: int, *, rate: int | None = None) -> GatedRelay:
    return GatedRelay(target_port, rate=rate)
