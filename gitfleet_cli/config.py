"""Where `gitfleet` keeps the server URL and token: one JSON file only its owner can read.

`$XDG_CONFIG_HOME/gitfleet/config.json` (default `~/.config/gitfleet/config.json`); the folder is
0700 and the file 0600. `GITFLEET_URL` and `GITFLEET_TOKEN` override what the file says.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gitfleet_cli.errors import UsageError


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str = ""

    def __repr__(self) -> str:  # a traceback or debug print never shows the token
        return f"Credentials(url={self.url!r}, token=<hidden>)"


def config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """The config file's path, following the XDG base directory rules."""
    base = environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "gitfleet" / "config.json"


def normalise_url(url: str) -> str:
    """The server's base URL without a trailing slash; refuses what is not http(s)://host."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"server URL {url!r}: give http(s)://host[:port]")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UsageError("server URL: no credentials, query or fragment; the token is asked for")
    return url


def load(environ: Mapping[str, str] = os.environ) -> Credentials:
    """The URL and token to use: environment first, then the config file."""
    stored: dict[str, str] = {}
    path = config_path(environ)
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}; run `gitfleet login` again") from None
    url = environ.get("GITFLEET_URL") or stored.get("url", "")
    token = environ.get("GITFLEET_TOKEN") or stored.get("token", "")
    if not url or not token:
        raise UsageError(
            "not logged in: run `gitfleet login`, or set GITFLEET_URL and GITFLEET_TOKEN"
        )
    return Credentials(normalise_url(url), token)


def save(credentials: Credentials, environ: Mapping[str, str] = os.environ) -> Path:
    """Writes the config file (folder 0700, file 0600) atomically; returns its path."""
    path = config_path(environ)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    # Created 0600 from the first byte: the token is never readable by others, not even briefly.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as stream:
            json.dump({"url": credentials.url, "token": credentials.token}, stream)
            stream.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
