"""`gitfleet`: parses the command line, runs one command, and maps failures to exit codes."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO
from urllib.parse import urlsplit

from gitfleet_cli import __version__, config
from gitfleet_cli.client import Client
from gitfleet_cli.errors import CliError, ExitCode, Refused, UsageError
from gitfleet_cli.follow import Follower, JobView, ProgressDisplay, human_bytes, outcome_line

EXIT_CODES_HELP = """\
exit codes:
  0  done (with --wait: the job succeeded)
  1  the job failed or was cancelled
  2  bad usage: unknown option, missing argument, not logged in, ambiguous name
  3  the server refused the request (4xx); its reason is printed
  4  the server is unreachable (connection error, timeout, 5xx after retries)
  5  --timeout ran out while the job was still queued or running

environment:
  GITFLEET_URL, GITFLEET_TOKEN  override the server and token saved by `gitfleet login`
  XDG_CONFIG_HOME               where config.json lives (default ~/.config/gitfleet/)
"""

DEFAULT_WAIT_TIMEOUT = 1800
_PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")


class Output:
    """Where a command writes: its result on stdout; progress and messages on stderr."""

    def __init__(self, *, as_json: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.as_json = as_json
        self.stdout = stdout
        self.stderr = stderr

    def result(self, data: Any, human: Callable[[], Iterable[str]]) -> None:
        """Prints `data` as JSON with --json, else the lines `human` gives."""
        if self.as_json:
            json.dump(data, self.stdout, indent=2)
            self.stdout.write("\n")
        else:
            for line in human():
                self.stdout.write(line + "\n")
        self.stdout.flush()

    def note(self, text: str) -> None:
        """A message for people; --json stays silent so stdout and stderr hold JSON only."""
        if not self.as_json:
            self.stderr.write(text + "\n")
            self.stderr.flush()


# --- arguments ---------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 0 < value <= 7 * 24 * 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 1 to 604800")
    return value


def expiry(text: str) -> str:
    """`30d` (days from now), a date `2027-01-31` or an ISO date-time; sent as ISO 8601."""
    days = re.fullmatch(r"([0-9]{1,5})d", text)
    if days:
        return (datetime.now(UTC) + timedelta(days=int(days.group(1)))).isoformat(
            timespec="seconds"
        )
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a number of days (30d), a date (2027-01-31) or an ISO date-time"
        ) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; `--json` is accepted before or after the command."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's default must not overwrite `--json` given before the command.
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON only"
    )
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_WAIT_TIMEOUT,
        help=f"stop waiting after this many seconds (default {DEFAULT_WAIT_TIMEOUT}; exit 5)",
    )

    parser = argparse.ArgumentParser(
        prog="gitfleet",
        description="Clone, pull and delete your projects' checkouts on Gitfleet nodes.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gitfleet {__version__}")
    parser.add_argument("--json", action="store_true", default=False, help="print JSON only")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Callable[..., int], help_text: str, *parents):
        sub = commands.add_parser(
            name,
            parents=[common, *parents],
            help=help_text,
            description=help_text,
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    login = command(
        "login",
        cmd_login,
        "Save the server URL and a token (asked for, or read from stdin or GITFLEET_TOKEN).",
    )
    login.add_argument("url", nargs="?", help="server URL, e.g. https://gitfleet.example.com")

    clone = command("clone", cmd_clone, "Create a project and clone it onto a node.", waiting)
    clone.add_argument("git_url", metavar="URL", help="the repository to clone")
    clone.add_argument("--node", required=True, help="name or id of the node")
    clone.add_argument("--name", help="project name (default: from the URL)")
    which = clone.add_mutually_exclusive_group()
    # No default here: argparse would take `--branch main` for the default and let --ref pass.
    which.add_argument("--branch", help="branch to check out (default main)")
    which.add_argument(
        "--ref", help="branch, tag or full commit id to check out (not with --branch)"
    )
    clone.add_argument("--depth", type=positive_int, help="shallow clone of this many commits")
    # Values the server checks are passed on as given: its 400 names the field and says why.
    clone.add_argument(
        "--lfs",
        action=argparse.BooleanOptionalAction,
        help="download Git LFS objects, or not (default: the server's, on when the node has "
        "git-lfs)",
    )
    clone.add_argument(
        "--submodules", metavar="{none,recursive}", help="fetch submodules (default none)"
    )
    clone.add_argument(
        "--filter", metavar="SPEC", help="partial clone: blob:none, tree:0 or blob:limit=<n>"
    )
    clone.add_argument(
        "--sparse",
        metavar="PATH",
        action="append",
        help="check out only this folder (cone mode); repeat for more",
    )
    clone.add_argument(
        "--credential",
        metavar="NAME-OR-ID",
        help="one of your git credentials (see /api/v1/credentials/) for the URL's host",
    )
    clone.add_argument("--wait", action="store_true", help="follow the clone until it ends")

    listing = command("ls", cmd_ls, "List your projects.")
    listing.add_argument("--status", choices=["pending", "ready", "failed", "deleting", "deleted"])
    listing.add_argument("--node", help="only projects on this node (name or id)")

    status = command("status", cmd_status, "Where a project stands now.")
    status.add_argument("project", metavar="ID", help="project id or name")

    watch = command(
        "watch", cmd_watch, "Follow a project's current (or latest) job until it ends.", waiting
    )
    watch.add_argument("project", metavar="ID", help="project id or name")

    pull = command("pull", cmd_pull, "Fetch and fast-forward a project's checkout.", waiting)
    pull.add_argument("project", metavar="ID", help="project id or name")
    pull.add_argument("--wait", action="store_true", help="follow the pull until it ends")
    pull.add_argument(
        "--strategy",
        choices=["ff-only", "rebase", "reset"],
        help="ff-only (the server's default): refuse local work; rebase: keep it; "
        "reset: back it up under refs/gitfleet/backup/, then equal upstream",
    )
    pull.add_argument("--ref", help="move the checkout to this branch, tag or full commit id first")

    inspect = command(
        "inspect", cmd_inspect, "Look at a project's checkout again (changes, size).", waiting
    )
    inspect.add_argument("project", metavar="ID", help="project id or name")
    inspect.add_argument("--wait", action="store_true", help="follow the inspect until it ends")

    delete = command("delete", cmd_delete, "Delete a project's checkout from its node.", waiting)
    delete.add_argument("project", metavar="ID", help="project id or name")
    delete.add_argument("--wait", action="store_true", help="follow the deletion until it ends")
    delete.add_argument(
        "--force",
        action="store_true",
        help="delete even uncommitted changes, untracked files and unpushed commits",
    )

    events = command("events", cmd_events, "A project's event timeline, oldest first.")
    events.add_argument("project", metavar="ID", help="project id or name")

    command("nodes", cmd_nodes, "List the nodes and whether they are online.")

    tokens = command("tokens", cmd_tokens_list, "List, create or revoke your API tokens.")
    token_commands = tokens.add_subparsers(dest="tokens_command", metavar="ACTION")
    token_commands.add_parser(
        "list", parents=[common], help="list your tokens (the default)"
    ).set_defaults(handler=cmd_tokens_list)
    create = token_commands.add_parser(
        "create", parents=[common], help="create a token; its secret is shown once"
    )
    create.add_argument("name", help="what the token is for")
    create.add_argument("--expires", type=expiry, help="30d, 2027-01-31 or an ISO date-time")
    create.set_defaults(handler=cmd_tokens_create)
    revoke = token_commands.add_parser("revoke", parents=[common], help="revoke a token")
    revoke.add_argument("token_id", metavar="ID", help="the token's id")
    revoke.set_defaults(handler=cmd_tokens_revoke)
    return parser


# --- commands ---------------------------------------------------------------------------------


class Context:
    """What a command needs: its output, the environment, and a client made on first use."""

    def __init__(self, output: Output, environ: dict[str, str], stdin: TextIO) -> None:
        self.output = output
        self.environ = environ
        self.stdin = stdin
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            credentials = config.load(self.environ)
            self._client = Client(credentials.url, credentials.token)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def cmd_login(args: argparse.Namespace, ctx: Context) -> int:
    """Checks the URL and token with one call, then saves them for the commands that follow."""
    url = args.url or ctx.environ.get("GITFLEET_URL", "")
    if not url:
        if not ctx.stdin.isatty():
            raise UsageError("give the server URL: gitfleet login https://gitfleet.example.com")
        url = input("Server URL: ")
    url = config.normalise_url(url)
    # Never an option: a token in argv is visible to every process on the machine.
    token = ctx.environ.get("GITFLEET_TOKEN", "")
    if not token:
        token = getpass.getpass("Token: ") if ctx.stdin.isatty() else ctx.stdin.readline()
    token = token.strip()
    if not token:
        raise UsageError(
            "no token given (type it when asked, pipe it on stdin, or set GITFLEET_TOKEN)"
        )
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        ctx.output.note(f"warning: {url} is plain http; the token crosses the network unencrypted")
    client = Client(url, token)
    try:
        client.get("/api/v1/projects/", params={"limit": 1})  # one call proves URL and token
    finally:
        client.close()
    path = config.save(config.Credentials(url, token), ctx.environ)
    ctx.output.result(
        {"url": url, "config": str(path)}, lambda: [f"Logged in to {url} (saved in {path})."]
    )
    return ExitCode.OK


def default_project_name(git_url: str) -> str:
    """The last part of a repository URL without `.git`, made into a valid project name."""
    tail = re.split(r"[/:]", git_url.rstrip("/"))[-1]
    tail = tail.removesuffix(".git")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", tail).lstrip("._-")[:100]
    if not _PROJECT_NAME.match(name):
        raise UsageError(f"cannot make a project name from {git_url!r}; give --name")
    return name


def clone_body(args: argparse.Namespace, client: Client | None = None) -> dict[str, Any]:
    """The `POST /api/v1/projects/clone` body: only the options given, so that the server's
    defaults apply to the rest. `client` resolves a credential given by name."""
    body: dict[str, Any] = {
        "name": args.name or default_project_name(args.git_url),
        "git_url": args.git_url,
        "node": args.node,
    }
    if args.ref is not None:
        body["ref"] = args.ref
    else:
        body["branch"] = args.branch or "main"
    for option in ("depth", "lfs", "submodules", "filter", "sparse"):
        value = getattr(args, option)
        if value is not None:
            body[option] = value
    if args.credential is not None:
        body["credential"] = resolve_credential(client, args.credential)
    return body


def cmd_clone(args: argparse.Namespace, ctx: Context) -> int:
    """Asks for a clone onto a node; the project name defaults to the repository's."""
    body = clone_body(args, ctx.client)
    accepted = ctx.client.post("/api/v1/projects/clone", json=body)
    return _accepted(args, ctx, accepted)


def cmd_pull(args: argparse.Namespace, ctx: Context) -> int:
    """Queues a pull of a project: fetch, then fast-forward, rebase or reset; with --ref, move
    the checkout to another branch, tag or commit."""
    project_id = resolve_project(ctx.client, args.project)
    body = {key: value for key in ("strategy", "ref") if (value := getattr(args, key))}
    accepted = ctx.client.post(f"/api/v1/projects/{project_id}/pull", json=body or None)
    return _accepted(args, ctx, accepted)


def cmd_inspect(args: argparse.Namespace, ctx: Context) -> int:
    """Queues a read-only look at a project's checkout, which refreshes its workspace state."""
    project_id = resolve_project(ctx.client, args.project)
    accepted = ctx.client.post(f"/api/v1/projects/{project_id}/inspect")
    return _accepted(args, ctx, accepted)


def cmd_delete(args: argparse.Namespace, ctx: Context) -> int:
    """Queues the deletion of a project's checkout; refused on the node when the checkout
    holds local work, unless --force."""
    project_id = resolve_project(ctx.client, args.project)
    query = "?force=true" if args.force else ""
    accepted = ctx.client.delete(f"/api/v1/projects/{project_id}{query}")
    return _accepted(args, ctx, accepted)


def _accepted(args: argparse.Namespace, ctx: Context, accepted: dict[str, Any]) -> int:
    """Reports a queued job; with --wait follows it and exits by how it ended."""
    project, job = accepted["project"], accepted["job"]
    if not args.wait:
        ctx.output.result(
            accepted,
            lambda: [
                f"{job['kind']} of {project['name']} queued: project {project['id']}, "
                f"job {job['id']}, node {project['node']['name']}."
            ],
        )
        return ExitCode.OK
    return _follow(ctx, project["id"], job["id"], project["name"], args.timeout, asked=True)


def cmd_watch(args: argparse.Namespace, ctx: Context) -> int:
    """Follows a project's open job, or reports how its latest job ended."""
    project_id = resolve_project(ctx.client, args.project)
    return _follow(ctx, project_id, None, args.project, args.timeout)


def _follow(
    ctx: Context,
    project_id: str,
    job_id: str | None,
    name: str,
    timeout: float,
    *,
    asked: bool = False,
) -> int:
    """Follows job `job_id` (or the project's latest) to its end; exits by how it ended."""
    follower = Follower(ctx.client, project_id, timeout=timeout)
    timeline = follower.history()
    job_id = job_id or timeline.last_job_id
    if not job_id:
        raise UsageError(f"project {name} has no jobs to watch")
    job = timeline.jobs.get(job_id) or JobView(id=job_id)
    if not ctx.output.as_json:
        display = follower.display = ProgressDisplay(
            ctx.output.stderr, label=f"{job.kind or 'job'} {name}"
        )
        if asked:  # this command queued the job, so it was queued whatever it is by now
            display.line(f"{display.label}: queued (project {project_id}, job {job_id})")
        if job.state == "leased":
            display.update(job, "JobLeased")
            if job.progress:
                display.update(job, "JobLeaseRenewed")
        elif job.state == "queued" and not asked:
            display.update(job, "JobQueued")
        elif asked and not job.is_open:  # it ended before this first look: say how all the same
            display.line(f"{display.label}: {outcome_line(job)}")
    job = follower.until_done(job_id)
    status = ctx.client.get(f"/api/v1/projects/{project_id}/status")
    ctx.output.result(
        {"project": status, "job": job.as_json()},
        lambda: [f"{job.kind} of {name}: {outcome_line(job)}", *_status_lines(status)],
    )
    return ExitCode.OK if job.state == "succeeded" else ExitCode.JOB_FAILED


def cmd_ls(args: argparse.Namespace, ctx: Context) -> int:
    """Lists the person's projects, optionally by status or node."""
    params = {key: value for key in ("status", "node") if (value := getattr(args, key))}
    projects = list(ctx.client.pages("/api/v1/projects/", params))
    rows = [
        [p["id"], p["name"], p["status"], p["node"]["name"], p["branch"], p["commit"][:12]]
        for p in projects
    ]
    ctx.output.result(
        projects, lambda: table(["ID", "NAME", "STATUS", "NODE", "BRANCH", "COMMIT"], rows)
    )
    return ExitCode.OK


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    """Shows where one project stands now."""
    project_id = resolve_project(ctx.client, args.project)
    status = ctx.client.get(f"/api/v1/projects/{project_id}/status")
    ctx.output.result(status, lambda: _status_lines(status))
    return ExitCode.OK


def _status_lines(status: dict[str, Any]) -> list[str]:
    lines = [
        f"project:  {status['id']}",
        f"status:   {status['status']}",
        f"node:     {status['node']['name']}{'' if status['node']['online'] else ' (offline)'}",
        f"branch:   {status['branch'] or '-'}",
        f"commit:   {status['commit'] or '-'}",
        f"path:     {status['local_path'] or '-'}",
    ]
    job = status.get("active_job")
    if job:
        progress = job.get("progress") or {}
        done = f", {progress['percent']}%" if isinstance(progress.get("percent"), int) else ""
        lines.append(f"job:      {job['kind']} {job['state']} (attempt {job['attempt']}{done})")
    reason = status.get("reason")
    error = status.get("last_error")
    if reason:
        retry = f" (tried again at {reason['retry_at']})" if reason.get("retry_at") else ""
        lines.append(f"why:      {reason.get('code', '')}: {reason.get('message', '')}{retry}")
    elif error:
        lines.append(f"error:    {error.get('code', '')}: {error.get('message', '')}")
    return lines


def cmd_events(args: argparse.Namespace, ctx: Context) -> int:
    """Shows a project's event timeline, oldest first."""
    project_id = resolve_project(ctx.client, args.project)
    events = list(ctx.client.pages(f"/api/v1/projects/{project_id}/events"))
    rows = [
        [str(e["version"]), e["recorded_at"], e["type"], _event_summary(e.get("data") or {})]
        for e in events
    ]
    ctx.output.result(events, lambda: table(["V", "RECORDED", "TYPE", "DETAIL"], rows))
    return ExitCode.OK


def _event_summary(data: dict[str, Any]) -> str:
    shown = []
    for key in ("kind", "attempt", "name", "branch", "reason"):
        if key in data:
            shown.append(f"{key}={data[key]}")
    if isinstance(data.get("result"), dict) and data["result"].get("commit"):
        shown.append(f"commit={str(data['result']['commit'])[:12]}")
    if isinstance(data.get("error"), dict):
        shown.append(f"error={data['error'].get('code', '')}")
    if isinstance(data.get("progress"), dict) and "percent" in data["progress"]:
        shown.append(f"{data['progress'].get('phase', '')} {data['progress']['percent']}%")
    return " ".join(shown)


def cmd_nodes(args: argparse.Namespace, ctx: Context) -> int:
    """Lists the nodes, online or not."""
    nodes = list(ctx.client.pages("/api/v1/nodes/"))
    rows = [
        [
            n["name"],
            "online" if n["online"] else "offline",
            "yes" if n["enabled"] else "no",
            str(n["running_jobs"]),
            human_bytes(n["disk_free_bytes"]) if n.get("disk_free_bytes") is not None else "-",
            n.get("last_seen_at") or "never",
        ]
        for n in nodes
    ]
    ctx.output.result(
        nodes, lambda: table(["NAME", "STATE", "ENABLED", "JOBS", "DISK FREE", "LAST SEEN"], rows)
    )
    return ExitCode.OK


TOKENS_PATH = "/api/v1/tokens/"


NO_TOKENS_API = (
    f"a server without {TOKENS_PATH} has no self-service tokens; ask an administrator, "
    "or upgrade the server"
)


def _tokens_call(call: Callable[[], Any], *, one_token: str = "") -> Any:
    """Runs a tokens API call; a 404 says the server may lack the API (or the token is gone)."""
    try:
        return call()
    except Refused as exc:
        if exc.status == 404 and not exc.fields:
            exc.message = (
                f"no token {one_token}, or this server has no {TOKENS_PATH}"
                if one_token
                else f"{exc.message} ({NO_TOKENS_API})"
            )
        raise


def _token_state(token: dict[str, Any]) -> str:
    """`active`, `revoked` or `expired`: the server lists revoked tokens too, for the record."""
    if token.get("revoked_at"):
        return "revoked"
    return "active" if token.get("active", True) else "expired"


def cmd_tokens_list(args: argparse.Namespace, ctx: Context) -> int:
    """Lists the person's API tokens."""
    tokens = _tokens_call(lambda: list(ctx.client.pages(TOKENS_PATH)))
    rows = [
        [
            str(t.get("id", "")),
            str(t.get("name", "")),
            _token_state(t),
            str(t.get("created_at") or "-"),
            str(t.get("expires_at") or "never"),
            str(t.get("last_used_at") or "never"),
        ]
        for t in tokens
    ]
    ctx.output.result(
        tokens, lambda: table(["ID", "NAME", "STATE", "CREATED", "EXPIRES", "LAST USED"], rows)
    )
    return ExitCode.OK


def cmd_tokens_create(args: argparse.Namespace, ctx: Context) -> int:
    """Creates an API token and prints its secret, which the server shows only once."""
    body = {"name": args.name}
    if args.expires:
        body["expires_at"] = args.expires
    created = _tokens_call(lambda: ctx.client.post(TOKENS_PATH, json=body))
    ctx.output.result(
        created,
        lambda: [
            f"Token {created.get('name', args.name)} (id {created.get('id', '?')}) created.",
            "Copy it now; it is not shown again:",
            str(created.get("token", "")),
        ],
    )
    return ExitCode.OK


def cmd_tokens_revoke(args: argparse.Namespace, ctx: Context) -> int:
    """Revokes one of the person's API tokens."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", args.token_id):
        raise UsageError(f"token id {args.token_id!r}: letters, digits, - and _ only")
    _tokens_call(
        lambda: ctx.client.delete(f"{TOKENS_PATH}{args.token_id}"), one_token=args.token_id
    )
    ctx.output.result({"revoked": args.token_id}, lambda: [f"Token {args.token_id} revoked."])
    return ExitCode.OK


# --- helpers ----------------------------------------------------------------------------------


def resolve_project(client: Client, reference: str) -> str:
    """A project's id from its id or its name (names are unique per person among live ones)."""
    try:
        return str(uuid.UUID(reference))
    except ValueError:
        pass
    if not _PROJECT_NAME.match(reference):
        raise UsageError(f"{reference!r} is neither a project id nor a project name")
    named = [p for p in client.pages("/api/v1/projects/") if p["name"] == reference]
    live = [p for p in named if p["status"] != "deleted"] or named
    if not live:
        raise Refused(f"no project named {reference!r}", status=404, code="not_found")
    if len(live) > 1:
        ids = ", ".join(p["id"] for p in live)
        raise UsageError(f"several projects are named {reference!r} ({ids}); give the id")
    return live[0]["id"]


def resolve_credential(client: Client | None, reference: str) -> str:
    """A credential's id from its id or its name (unique per person). An id is passed on as
    given, so that the server, which alone knows whose it is, answers for it."""
    try:
        return str(uuid.UUID(reference))
    except ValueError:
        pass
    if client is None:
        raise UsageError(f"credential {reference!r} is not an id")
    named = [c for c in client.pages("/api/v1/credentials/") if c.get("name") == reference]
    if not named:
        raise Refused(
            f"no credential named {reference!r}", status=404, code="not_found",
            fields={"credential": [f"You have no credential named {reference!r}."]},
        )  # fmt: skip
    return str(named[0]["id"])


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns as wide as their widest cell."""
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)
    ]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
    environ: dict[str, str] | None = None,
) -> int:
    """Runs one `gitfleet` command and returns its exit code."""
    stdout, stderr, stdin = stdout or sys.stdout, stderr or sys.stderr, stdin or sys.stdin
    parser = build_parser()
    try:
        # argparse writes help and usage errors to sys.stdout/sys.stderr itself.
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help and --version exit 0, bad usage exits 2
        return int(exc.code or 0)
    output = Output(as_json=args.json, stdout=stdout, stderr=stderr)
    ctx = Context(output, dict(os.environ if environ is None else environ), stdin)
    try:
        return int(args.handler(args, ctx))
    except CliError as exc:
        if output.as_json:
            json.dump(exc.as_json(), stdout, indent=2)
            stdout.write("\n")
        else:
            stderr.write(f"gitfleet: {exc}\n")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        stderr.write("\ngitfleet: interrupted\n")
        return 130
    finally:
        ctx.close()
