"""A real OpenSSH server (Debian's `openssh-server`) on a free loopback port, for SSH clones.

It has its own host key, accepts only the deploy keys given to it, and lets them run nothing
but git's read commands (`git-shell`, which allows git-upload-pack and its kin). It runs as the
user running the tests (root here), with `StrictModes no` and no PAM.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.gitservers import free_port, wait_for_port

SSHD = "/usr/sbin/sshd"


@dataclass
class SshServer:
    port: int
    folder: Path
    process: subprocess.Popen[bytes]
    host_public_key: str  # "ssh-ed25519 AAAA…"
    user: str

    @property
    def known_hosts_line(self) -> str:
        """The line a known_hosts file needs for this server."""
        return f"[127.0.0.1]:{self.port} {self.host_public_key}"

    @property
    def host(self) -> str:
        """`127.0.0.1:port`, as a credential's host names it."""
        return f"127.0.0.1:{self.port}"

    def url(self, bare: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{bare}"

    def log(self) -> str:
        return (self.folder / "sshd.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def other_host_key(folder: Path) -> str:
    """A host public key no server here has: what a known_hosts line for an impostor holds."""
    path = folder / "impostor_host_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def start_sshd(folder: Path, deploy_keys: list[str], *, delay_seconds: float = 0.0) -> SshServer:
    """sshd on 127.0.0.1 accepting `deploy_keys` (public key lines) for git reads only.

    `delay_seconds` makes every session wait before git starts, so that a test can look at the
    client's processes while a clone runs.
    """
    folder.mkdir(parents=True, exist_ok=True)
    host_key = folder / "ssh_host_ed25519_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
        check=True,
        capture_output=True,
    )
    forced = 'git-shell -c "$SSH_ORIGINAL_COMMAND"'
    if delay_seconds:
        forced = f"sleep {delay_seconds}; exec {forced}"
    options = f"restrict,command={_quoted(forced)}"
    authorized = folder / "authorized_keys"
    authorized.write_text("".join(f"{options} {key.strip()}\n" for key in deploy_keys))
    port = free_port()
    user = getpass.getuser()
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {folder / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "StrictModes no",
                "UsePAM no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {user}",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    # sshd refuses to start without its privilege separation folder.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    log = open(folder / "sshd.log", "wb")  # noqa: SIM115 - the server writes it until stopped
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    try:
        wait_for_port(port)
    except BaseException:
        process.kill()
        process.wait()
        raise
    time.sleep(0.1)
    public = " ".join(host_key.with_suffix(".pub").read_text().split()[:2])
    return SshServer(port=port, folder=folder, process=process, host_public_key=public, user=user)


def _quoted(text: str) -> str:
    """`text` as an authorized_keys option value: in double quotes, inner ones escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
