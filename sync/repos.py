"""One spelling for every way of naming a repository, so a push can be matched to checkouts."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?(?P<host>[^/:]+):(?P<path>(?!//).+)$")


def repository_key(url: str) -> str | None:
    """`host/path` in lower case without `.git` and slashes at the ends: the https, ssh and scp
    forms of one repository give the same key. None for what names no remote repository."""
    url = url.strip()
    if "://" in url:
        parts = urlsplit(url)
        host, path = parts.hostname or "", parts.path
    else:
        match = _SCP_LIKE.match(url)
        if match is None:
            return None
        host, path = match["host"], match["path"]
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    path = path.strip("/")
    if not host or not path:
        return None
    return f"{host.lower().rstrip('.')}/{path.lower()}"
