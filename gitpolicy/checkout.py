"""What a checkout may ask for besides its URL: the ref, a partial-clone filter, sparse folders,
the submodule mode, and the URLs that submodules and Git LFS lead to."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from gitpolicy.addresses import check_host
from gitpolicy.names import validate_branch
from gitpolicy.urls import GitUrl, UrlPolicy, parse_git_url

MAX_SPARSE_PATHS = 100
MAX_SPARSE_PATH_LENGTH = 255
MAX_FILTER_BLOB_LIMIT = 2**40
SUBMODULE_MODES = ("none", "recursive")
REF_KINDS = ("branch", "tag", "commit")

_COMMIT = re.compile(r"(?:[0-9a-f]{40}|[0-9a-f]{64})\Z")
_BLOB_LIMIT = re.compile(r"blob:limit=(?P<number>[1-9][0-9]{0,12})(?P<unit>[kmg]?)\Z")
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}
_PATH_PART = re.compile(r"[A-Za-z0-9._+@=,][A-Za-z0-9 ._+@=,-]*\Z")
_SUBMODULE_NAME = re.compile(r"[A-Za-z0-9._/+@=,-]{1,255}\Z")


def is_commit_id(ref: str) -> bool:
    """True if `ref` is a full commit id (40 hex digits, or 64 for SHA-256 repositories)."""
    return bool(_COMMIT.match(ref))


def validate_ref(ref: object) -> str:
    """Return `ref` if it names a branch, a tag or a full commit id, else raise ValueError.

    Tags follow the same name rules as branches; a commit must be given in full, lower case,
    since an abbreviation could name a different object tomorrow.
    """
    if isinstance(ref, str) and is_commit_id(ref):
        return ref
    if isinstance(ref, str) and len(ref) in (40, 64) and re.fullmatch(r"[0-9a-fA-F]+", ref):
        raise ValueError("Write a commit id in full and in lower case.")
    try:
        return validate_branch(ref)
    except ValueError as exc:
        message = str(exc).replace("A branch name", "A ref").replace("branch name", "ref")
        raise ValueError(message) from None


def validate_filter(value: object) -> str:
    """Return a partial-clone filter git may be given: `blob:none`, `tree:0` or
    `blob:limit=<n>[k|m|g]`; an empty string means no filter."""
    if value in ("", None):
        return ""
    if not isinstance(value, str):
        raise ValueError("A filter must be a string.")
    if value in ("blob:none", "tree:0"):
        return value
    match = _BLOB_LIMIT.match(value)
    if match is None:
        raise ValueError("Use blob:none, tree:0 or blob:limit=<n> (n bytes, or with k, m or g).")
    if int(match["number"]) * _UNITS[match["unit"]] > MAX_FILTER_BLOB_LIMIT:
        raise ValueError(f"blob:limit is at most {MAX_FILTER_BLOB_LIMIT} bytes.")
    return value


def validate_worktree_path(path: object) -> str:
    """Return a folder path inside a worktree (relative, `/`-separated, no `.` or `..` parts,
    nothing option-like, no control characters), or raise ValueError."""
    if not isinstance(path, str) or not path:
        raise ValueError("A path must be a non-empty string.")
    if len(path) > MAX_SPARSE_PATH_LENGTH:
        raise ValueError(f"A path has at most {MAX_SPARSE_PATH_LENGTH} characters.")
    if path.startswith("/") or "\\" in path:
        raise ValueError("A path is relative to the repository and uses '/' only.")
    parts = path.rstrip("/").split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError("A path may not contain empty, '.' or '..' parts.")
        if part.lower() == ".git":
            raise ValueError("A path may not name .git.")
        if not _PATH_PART.match(part) or part.endswith(" "):
            raise ValueError(
                "Path parts use letters, digits, spaces and . _ + @ = , - only, and may not start "
                "with '-' or a space."
            )
    return "/".join(parts)


def validate_sparse(paths: object) -> list[str]:
    """Return the folders of a cone-mode sparse checkout, or raise ValueError saying why not."""
    if paths is None:
        return []
    if not isinstance(paths, list | tuple):
        raise ValueError("sparse is a list of folder paths.")
    if len(paths) > MAX_SPARSE_PATHS:
        raise ValueError(f"sparse lists at most {MAX_SPARSE_PATHS} folders.")
    checked = [validate_worktree_path(path) for path in paths]
    if len(set(checked)) != len(checked):
        raise ValueError("sparse lists a folder twice.")
    return checked


def validate_submodules(mode: object) -> str:
    """Return `none` or `recursive`, or raise ValueError."""
    if mode not in SUBMODULE_MODES:
        raise ValueError(f"submodules is one of: {', '.join(SUBMODULE_MODES)}.")
    return str(mode)


def validate_submodule_name(name: object) -> str:
    """A submodule's name becomes a folder under .git/modules: no `..`, nothing absolute."""
    if not isinstance(name, str) or not _SUBMODULE_NAME.match(name):
        raise ValueError("A submodule name uses letters, digits and . _ / + @ = , - only.")
    if name.startswith(("/", "-")) or any(p in ("", ".", "..") for p in name.split("/")):
        raise ValueError("A submodule name may not start with '/' or '-' or hold '..' parts.")
    return name


def resolve_submodule_url(url: object, parent: GitUrl, policy: UrlPolicy) -> GitUrl:
    """The URL a submodule is fetched from, relative URLs resolved against the parent's, checked
    against `policy` with the `file` scheme refused whatever the policy allows (a repository
    must not make a node read its own disk)."""
    if not isinstance(url, str) or not url:
        raise ValueError("A submodule URL is required.")
    if url.startswith(("./", "../")):
        if parent.scheme == "ssh" and "://" not in parent.url:
            raise ValueError("Relative submodule URLs need a parent URL of the form scheme://.")
        parts = [part for part in parent.path.split("/") if part]
        for part in url.split("/"):
            if part == "..":
                if not parts:
                    raise ValueError("The relative submodule URL leaves the server's root.")
                parts.pop()
            elif part not in ("", "."):
                parts.append(part)
        if not parts:
            raise ValueError("The relative submodule URL names no repository.")
        joined = "/" + "/".join(parts)
        head = parent.url[: len(parent.url) - len(parent.path)] if parent.path else parent.url
        url = head + joined
    network = UrlPolicy(
        allowed_schemes=policy.allowed_schemes - {"file"},
        allow_private_hosts=policy.allow_private_hosts,
    )
    return parse_git_url(url, network)


def validate_lfs_url(url: object, policy: UrlPolicy) -> str:
    """Return an LFS endpoint or object URL if it may be fetched: http or https among the
    allowed schemes, no credentials, a host the policy allows. Query strings are fine here
    (object stores sign their URLs with them)."""
    if not isinstance(url, str) or not url or len(url) > 8192:
        raise ValueError("An LFS URL must be a string of at most 8192 characters.")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("An LFS URL may not contain whitespace or control characters.")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"Not a valid URL: {exc}.") from None
    allowed = policy.allowed_schemes & {"http", "https"}
    if parts.scheme not in allowed or not url.startswith(f"{parts.scheme}://"):
        raise ValueError(f"LFS URLs use one of: {', '.join(sorted(allowed)) or 'no scheme'}.")
    if "@" in parts.netloc:
        raise ValueError("Credentials never travel in URLs.")
    if not parts.hostname:
        raise ValueError("An LFS URL names a host.")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ValueError("The port must be a number from 1 to 65535.") from None
    host = parts.netloc.rpartition(":")[0] if parts.netloc.count(":") == 1 else parts.netloc
    check_host(host, policy)
    return url
