"""Helpers for tests of people's git credentials: real keys made by ssh-keygen, Fernet keys,
and the places a leaked secret would show up."""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet

TOKEN = "ghp_" + "Zq7XwT3kLm9PvR2sNc8YbH4dJf6GtA1eUo5i"


def fernet_key() -> str:
    return Fernet.generate_key().decode()


@dataclass(frozen=True)
class SshKey:
    private: str
    public: str
    fingerprint: str

    @property
    def body(self) -> str:
        """The base64 inside the private key's armour: what a leak of the key would contain."""
        lines = self.private.strip().splitlines()
        return "".join(line for line in lines if not line.startswith("-----"))

    def body_parts(self) -> list[str]:
        """Each base64 line of the key, so that a leak split across lines is still found."""
        lines = self.private.strip().splitlines()
        return [line for line in lines if not line.startswith("-----")]


def make_ssh_key(
    folder: Path, kind: str = "ed25519", *, passphrase: str = "", pem: bool = False
) -> SshKey:
    """A fresh key pair made by the real ssh-keygen, with its `ssh-keygen -l` fingerprint."""
    path = folder / f"id_{kind}_{'pem' if pem else 'openssh'}_{len(passphrase)}"
    command = ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "test", "-f", str(path)]
    if kind == "rsa":
        command += ["-b", "2048"]
    if pem:
        command += ["-m", "PEM"]
    subprocess.run(command, check=True, capture_output=True)
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(path.with_suffix(".pub"))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[1]
    return SshKey(
        private=path.read_text(), public=path.with_suffix(".pub").read_text(), fingerprint=listed
    )


def leaks(haystack: bytes, secret: str) -> bool:
    """Whether `secret` appears in `haystack` as text or in base64 of its bytes."""
    needle = secret.encode()
    return needle in haystack or base64.b64encode(needle) in haystack
