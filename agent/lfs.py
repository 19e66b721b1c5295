"""Git LFS downloads done by the agent itself, so that every URL obeys the node's policy.

git-lfs never fetches here (`GIT_LFS_SKIP_SMUDGE` is always set); it only serves as the clean
filter, named by the agent's own `-c` settings, so that `git status` sees a downloaded file as
unchanged. The agent finds the pointer files of the checked-out commit, asks the LFS batch API
for them, checks the endpoint, every object `href` and every redirect against the URL policy
(scheme, host, the addresses it resolves to), downloads with a size bound and a SHA-256 check,
and replaces each pointer file without following any symlink. A pointer left behind fails the
job with `lfs_incomplete`.

The project's HTTPS credential (`agent.credentials.HttpAuth`) goes to the batch API and to
object hrefs only on the clone URL's own scheme, host and port. A download action's own
`header` map is sent with its href as git-lfs does (its Authorization then replaces the
project's), except that a header holding the project's secret never goes to another host, and
a redirect to another host drops every Authorization header.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from agent.config import AgentConfig
from agent.credentials import HttpAuth, url_origin
from agent.errors import JobFailure
from agent.git import Git, Progress
from agent.listing import Listing, list_index
from agent.worktree import read_small_file, replace_file
from gitpolicy import UrlPolicy, check_resolved_host, parse_git_url, validate_lfs_url

POINTER_MAX_BYTES = 1024
MAX_REDIRECTS = 5
BATCH_SIZE = 100
HTTP_TIMEOUT = 60
_POINTER = re.compile(
    rb"version https://git-lfs\.github\.com/spec/v1\n"
    rb"(?:[a-z0-9.-]+ [^\n]*\n)*?"
    rb"oid sha256:(?P<oid>[0-9a-f]{64})\n"
    rb"size (?P<size>[0-9]{1,18})\n"
    rb"(?:[a-z0-9.-]+ [^\n]*\n)*\Z"
)
_MEDIA_TYPE = "application/vnd.git-lfs+json"
# The agent's own filter settings; a repository's config may not name or change them.
FILTER_SETTINGS = (
    ("filter.lfs.clean", "git-lfs clean -- %f"),
    ("filter.lfs.smudge", "git-lfs smudge -- %f"),
    ("filter.lfs.process", "git-lfs filter-process"),
    ("filter.lfs.required", "true"),
)


@dataclass(frozen=True)
class Pointer:
    """One LFS pointer file in the worktree."""

    path: str
    oid: str
    size: int
    mode: int


def enable(git: Git) -> None:
    """Name the LFS filter for every later git command of this job, or fail if git-lfs is
    missing."""
    if not shutil.which("git-lfs", path=git.environment.get("PATH")):
        raise JobFailure("lfs_unavailable", "git-lfs is not installed on this node")
    git.add_settings(FILTER_SETTINGS)


def endpoint(git: Git, repo: str, git_url: str, policy: UrlPolicy) -> str:
    """The LFS endpoint: `lfs.url` (or `remote.origin.lfsurl`) of the commit's .lfsconfig,
    else the one git-lfs derives from the clone URL; refused unless the policy allows it."""
    configured = _lfsconfig(git, repo)
    url = configured.get("lfs.url") or configured.get("remote.origin.lfsurl")
    if not url:
        parsed = parse_git_url(git_url, UrlPolicy(
            allowed_schemes=frozenset({"http", "https", "git", "ssh"}),
            allow_private_hosts=True,
        ))  # fmt: skip
        scheme = parsed.scheme if parsed.scheme in ("http", "https") else "https"
        port = f":{parsed.port}" if parsed.port and scheme == parsed.scheme else ""
        host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
        path = parsed.path if parsed.path.startswith("/") else f"/{parsed.path}"
        path = path.rstrip("/")
        if not path.endswith(".git"):
            path += ".git"
        url = f"{scheme}://{host}{port}{path}/info/lfs"
    check_url(url, policy)
    return url.rstrip("/")


def check_url(url: str, policy: UrlPolicy) -> None:
    """Apply the URL policy and the address rules (as resolved now) to an LFS URL."""
    try:
        validate_lfs_url(url, policy)
        parts = urlsplit(url)
        check_resolved_host(parts.hostname or "", parts.port, policy)
    except ValueError as exc:
        raise JobFailure("lfs_url_refused", f"LFS URL {_shown(url)} refused: {exc}") from None


def lfs_files(git: Git, repo: str, index: Listing | None = None) -> dict[str, int]:
    """The tracked regular files that the LFS filter covers: path -> file mode; `index`: the
    index's entries when the job has listed them already. Only a `.gitattributes` can name the
    filter here (the agent writes no info/attributes and reads no global config), so a
    repository without one is not asked about every path."""
    if index is None:
        index = list_index(git, repo)
    candidates = index.regular_files
    if not candidates or not index.has_attributes:
        return {}
    return {path: candidates[path] for path in _lfs_filtered(git, repo, list(candidates))}


def pointers(git: Git, repo: str, files: dict[str, int] | None = None) -> list[Pointer]:
    """The worktree's files that the LFS filter covers and that still hold a pointer."""
    found = []
    for path, mode in (lfs_files(git, repo) if files is None else files).items():
        content = read_small_file(repo, path, POINTER_MAX_BYTES)
        match = _POINTER.match(content) if content is not None else None
        if match:
            found.append(Pointer(path, match["oid"].decode(), int(match["size"]), mode))
    return found


def summary(
    git: Git, repo: str, index: Listing | None = None, *, listed: int = 20
) -> dict[str, Any] | None:
    """The workspace summary's `lfs` entry: how many tracked files are LFS files and which
    still hold a pointer (a checkout made without LFS, or objects never downloaded); None for
    a repository without LFS files. `index`: the index's entries when listed already."""
    files = lfs_files(git, repo, index)
    if not files:
        return None
    left = sorted(p.path for p in pointers(git, repo, files))
    return {"files": len(files), "pointers_left": len(left), "paths_left": left[:listed]}


def download(
    git: Git,
    repo: str,
    url: str,
    policy: UrlPolicy,
    config: AgentConfig,
    auth: HttpAuth | None = None,
) -> int:
    """Fetch every LFS object whose pointer is in the worktree and put it in place, with `auth`
    for its own origin only; returns how many files were replaced. Raises JobFailure
    `lfs_incomplete` if any stays a pointer."""
    wanted = pointers(git, repo)
    if not wanted:
        return 0
    git.add_settings([("lfs.url", url)])
    objects_dir = os.path.join(repo, ".git", "lfs", "objects")
    temp_dir = os.path.join(repo, ".git", "lfs", "tmp")
    os.makedirs(temp_dir, exist_ok=True)
    session = requests.Session()
    session.trust_env = False  # no ~/.netrc credentials for a host the repository chose
    verify = config.tls_verify
    total_bytes = sum(p.size for p in wanted)
    done_bytes = 0
    unique = {p.oid: p for p in wanted}
    failed: dict[str, str] = {}
    oids = list(unique)
    for start in range(0, len(oids), BATCH_SIZE):
        chunk = [unique[oid] for oid in oids[start : start + BATCH_SIZE]]
        answer = _batch(session, url, chunk, policy, verify, auth)
        for item in answer:
            oid = item.get("oid")
            if oid not in unique:
                continue
            href, headers, problem = _download_action(item)
            if problem:
                failed[oid] = problem
                continue
            stored = _object_path(objects_dir, oid)
            if not os.path.exists(stored):
                _fetch_object(
                    session, href, headers, unique[oid], temp_dir, stored, policy, verify, auth
                )
            done_bytes += unique[oid].size
            git.report(Progress("lfs", _percent(done_bytes, total_bytes), len(failed), done_bytes))
    replaced = 0
    for pointer in wanted:
        stored = _object_path(objects_dir, pointer.oid)
        if pointer.oid in failed or not os.path.exists(stored):
            continue
        replace_file(repo, pointer.path, stored, pointer.mode)
        replaced += 1
    # The index still has the pointer's size, which git takes as a change without looking
    # (read-cache.c: a size that differs is modified); re-hashing the files through the clean
    # filter stores the same blob ids with the new files' stat data.
    done = [p.path for p in wanted if p.oid not in failed]
    for start in range(0, len(done), 1000):
        git.run("update-index", "--", *done[start : start + 1000], repo=repo)
    left = pointers(git, repo)
    if left:
        reasons = "; ".join(f"{p.path}: {failed.get(p.oid, 'not downloaded')}" for p in left[:10])
        raise JobFailure(
            "lfs_incomplete", f"{len(left)} LFS file(s) still hold pointers: {reasons}"
        )
    return replaced


def _lfsconfig(git: Git, repo: str) -> dict[str, str]:
    """The .lfsconfig of HEAD, read from the object database (never from a worktree file that
    could be a symlink); only a regular file counts."""
    entry = git.run("ls-tree", "-z", "HEAD", "--", ".lfsconfig", repo=repo).stdout
    if not entry.startswith("100644 blob "):
        return {}
    listing = git.run(
        "config", "--blob", "HEAD:.lfsconfig", "--no-includes", "--list", "-z", repo=repo,
        check=False,
    )  # fmt: skip
    values: dict[str, str] = {}
    for item in listing.stdout.split("\0"):
        key, _, value = item.partition("\n")
        if key:
            values[key.lower()] = value
    return values


def _lfs_filtered(git: Git, repo: str, paths: list[str]) -> list[str]:
    """The paths whose `filter` attribute is `lfs` (any other filter is ignored: the agent names
    no driver for it, so git leaves such files as they are stored)."""
    found = []
    for start in range(0, len(paths), 1000):
        chunk = paths[start : start + 1000]
        out = git.run("check-attr", "-z", "filter", "--", *chunk, repo=repo).stdout.split("\0")
        for index in range(0, len(out) - 2, 3):
            if out[index + 2] == "lfs":
                found.append(out[index])
    return found


def _batch(
    session: requests.Session,
    url: str,
    chunk: list[Pointer],
    policy: UrlPolicy,
    verify: object,
    auth: HttpAuth | None,
) -> list[dict]:
    body = {
        "operation": "download",
        "transfers": ["basic"],
        "objects": [{"oid": p.oid, "size": p.size} for p in chunk],
        "hash_algo": "sha256",
    }
    response = _request(
        session, "POST", f"{url}/objects/batch", policy, verify, auth,
        headers={"Accept": _MEDIA_TYPE, "Content-Type": _MEDIA_TYPE}, json=body,
    )  # fmt: skip
    with response:
        if response.status_code in (401, 403):
            raise JobFailure("auth_failed", f"the LFS batch API answered {response.status_code}")
        if response.status_code != 200:
            raise JobFailure("network_error", f"the LFS batch API answered {response.status_code}")
        try:
            objects = response.json().get("objects")
        except ValueError:
            objects = None
    if not isinstance(objects, list):
        raise JobFailure("lfs_incomplete", "the LFS batch API answered without objects")
    return [item for item in objects if isinstance(item, dict)]


def _download_action(item: dict) -> tuple[str, dict[str, str], str]:
    error = item.get("error")
    if isinstance(error, dict):
        return "", {}, f"the LFS server said {error.get('code')}: {str(error.get('message'))[:200]}"
    action = (item.get("actions") or {}).get("download")
    if not isinstance(action, dict) or not isinstance(action.get("href"), str):
        return "", {}, "the LFS server gave no download action"
    headers = action.get("header") or {}
    if not isinstance(headers, dict):
        headers = {}
    clean = {str(k): str(v) for k, v in headers.items() if "\n" not in f"{k}{v}"}
    return action["href"], clean, ""


def _fetch_object(
    session: requests.Session,
    href: str,
    headers: dict[str, str],
    pointer: Pointer,
    temp_dir: str,
    stored: str,
    policy: UrlPolicy,
    verify: object,
    auth: HttpAuth | None,
) -> None:
    response = _request(session, "GET", href, policy, verify, auth, headers=headers, stream=True)
    temp = os.path.join(temp_dir, f"{pointer.oid}-{secrets.token_hex(4)}")
    digest = hashlib.sha256()
    size = 0
    with response, open(temp, "xb") as out:
        if response.status_code in (401, 403):
            os.unlink(temp)
            raise JobFailure(
                "auth_failed", f"{pointer.path}: the LFS object answered {response.status_code}"
            )
        if response.status_code != 200:
            os.unlink(temp)
            raise JobFailure(
                "lfs_incomplete", f"{pointer.path}: the LFS object answered {response.status_code}"
            )
        for chunk in response.iter_content(1 << 16):
            size += len(chunk)
            if size > pointer.size:
                break
            digest.update(chunk)
            out.write(chunk)
    if size != pointer.size or digest.hexdigest() != pointer.oid:
        os.unlink(temp)
        raise JobFailure("lfs_incomplete", f"{pointer.path}: the LFS object does not match")
    os.makedirs(os.path.dirname(stored), exist_ok=True)
    os.replace(temp, stored)


def _request(
    session: requests.Session,
    method: str,
    url: str,
    policy: UrlPolicy,
    verify: object,
    auth: HttpAuth | None,
    *,
    headers: dict[str, str],
    **kwargs,
) -> requests.Response:
    """One request, following redirects by hand so that every hop passes the policy; a hop to
    another origin loses the Authorization header an earlier hop had (as browsers and requests
    do: a redirect is the server's word, not the person's)."""
    for _ in range(MAX_REDIRECTS + 1):
        check_url(url, policy)
        try:
            response = session.request(
                method, url, allow_redirects=False, timeout=HTTP_TIMEOUT, verify=verify,
                headers=_headers_for(url, headers, auth), **kwargs,
            )  # fmt: skip
        except requests.RequestException as exc:
            raise JobFailure("network_error", f"LFS {_shown(url)}: {exc}") from None
        if response.status_code not in (301, 302, 303, 307, 308):
            return response
        location = response.headers.get("Location", "")
        response.close()
        target = urljoin(url, location)
        if url_origin(target) != url_origin(url):
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        url = target
        if response.status_code == 303:
            method, kwargs = "GET", {k: v for k, v in kwargs.items() if k != "json"}
    raise JobFailure("lfs_incomplete", f"more than {MAX_REDIRECTS} redirects from the LFS server")


def _headers_for(url: str, headers: dict[str, str], auth: HttpAuth | None) -> dict[str, str]:
    """What one request to `url` sends: `headers`, plus the project's credential on its own
    origin unless the LFS server named an Authorization of its own; on another origin, no
    header that holds the project's secret."""
    if auth is None:
        return headers
    if url_origin(url) != auth.origin:
        return {k: v for k, v in headers.items() if not auth.carried_by(v)}
    if any(k.lower() == "authorization" for k in headers):
        return headers
    return {**headers, **auth.headers_for(url)}


def _object_path(objects_dir: str, oid: str) -> str:
    return os.path.join(objects_dir, oid[0:2], oid[2:4], oid)


def _percent(done: int, total: int) -> int:
    return 100 if total <= 0 else min(100, done * 100 // total)


def _shown(url: str) -> str:
    """A URL without its query string, which may hold a signature."""
    return url.split("?", 1)[0][:200]
