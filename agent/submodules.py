"""Submodules, fetched only when the job asks for `recursive` and only from URLs that pass.

Every submodule of a commit is checked before anything is fetched: its name, its path (inside
the worktree, through real folders only, matching a gitlink of the commit), and its URL
(relative URLs resolved against the parent's, then the URL policy with `file` refused, then the
addresses its host resolves to now). The agent writes each submodule's `url` and `active` into
`.git/config` itself and names `update=checkout` on the command line, so `.gitmodules` can
neither run a command nor point git anywhere else.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

from agent.errors import JobFailure
from agent.git import Git
from agent.listing import Listing, list_head
from agent.paths import UnsafePath
from agent.worktree import open_folder
from gitpolicy import (
    GitUrl,
    UrlPolicy,
    check_resolved_host,
    resolve_submodule_url,
    validate_submodule_name,
    validate_worktree_path,
)

MAX_NESTING = 3


@dataclass(frozen=True)
class Submodule:
    name: str
    path: str
    url: GitUrl


def gitlinks(git: Git, repo: str) -> dict[str, str]:
    """The commit's submodule entries (mode 160000): path -> commit id."""
    return list_head(git, repo).gitlinks


def plan(git: Git, repo: str, parent: GitUrl, policy: UrlPolicy) -> list[Submodule]:
    """Every submodule of HEAD in `repo`, checked; raises JobFailure `submodule_refused`."""
    links = gitlinks(git, repo)
    if not links:
        return []
    entry = git.run("ls-tree", "-z", "HEAD", "--", ".gitmodules", repo=repo).stdout
    if not entry.startswith("100644 blob "):
        raise JobFailure("submodule_refused", "the commit has submodules but no plain .gitmodules")
    listing = git.run(
        "config", "--blob", "HEAD:.gitmodules", "--no-includes", "--list", "-z", repo=repo
    ).stdout
    declared: dict[str, dict[str, str]] = {}
    for item in listing.split("\0"):
        key, _, value = item.partition("\n")
        section, _, rest = key.partition(".")
        name, _, field = rest.rpartition(".")
        if section == "submodule" and name and field in ("path", "url"):
            declared.setdefault(name, {})[field] = value
    found = []
    for name, fields in declared.items():
        if fields.get("path") not in links:
            continue
        try:
            validate_submodule_name(name)
        except ValueError as exc:
            raise JobFailure("submodule_refused", f"submodule name {name!r}: {exc}") from None
        path = fields["path"]
        try:
            validate_worktree_path(path)
        except ValueError as exc:
            raise JobFailure("submodule_refused", f"submodule path {path!r}: {exc}") from None
        try:
            url = resolve_submodule_url(fields.get("url"), parent, policy)
            check_resolved_host(url.host, url.port, policy)
        except ValueError as exc:
            raise JobFailure(
                "submodule_refused", f"submodule {name!r} URL {fields.get('url')!r}: {exc}"
            ) from None
        _check_real_folder(repo, path)
        found.append(Submodule(name, path, url))
    missing = sorted(set(links) - {s.path for s in found})
    if missing:
        raise JobFailure("submodule_refused", f"no usable .gitmodules entry for {missing[0]!r}")
    return found


def update(git: Git, repo: str, parent: GitUrl, policy: UrlPolicy, *, level: int = 1) -> int:
    """Fetch and check out every submodule, nested ones too; returns how many were checked out.

    The whole tree of one level is checked before its first fetch.
    """
    if level > MAX_NESTING:
        raise JobFailure("submodule_refused", f"submodules nest more than {MAX_NESTING} deep")
    submodules = plan(git, repo, parent, policy)
    if not submodules:
        return 0
    # `--local` from the checkout itself: a nested submodule's .git is a file naming its
    # repository under the top one's .git/modules.
    for sub in submodules:
        git.run("config", "--local", f"submodule.{sub.name}.url", sub.url.url, cwd=repo)
        git.run("config", "--local", f"submodule.{sub.name}.active", "true", cwd=repo)
    for sub in submodules:
        git.add_settings([(f"submodule.{sub.name}.update", "checkout")])
    count = 0
    paths = [sub.path for sub in submodules]
    git.run(
        "submodule", "update", "--checkout", "--",
        *paths, cwd=repo,
    )  # fmt: skip
    for sub in submodules:
        count += 1
        inner = os.path.join(repo, sub.path)
        count += update(git, inner, sub.url, policy, level=level + 1)
    return count


def summary(
    git: Git, repo: str, head: Listing | None = None, *, listed: int = 20
) -> dict[str, Any] | None:
    """The workspace summary's `submodules` entry: how many the commit has, how many are
    initialised, and for each (up to `listed`) the commit recorded and the one checked out
    (None when not initialised); None for a commit without submodules. `head`: HEAD's entries
    when the job has listed them already."""
    links = (head if head is not None else list_head(git, repo)).gitlinks
    if not links:
        return None
    modules = []
    for path, recorded in sorted(links.items()):
        modules.append(
            {"path": path, "commit": recorded, "checked_out": _checked_out(git, repo, path)}
        )
    initialised = sum(1 for module in modules if module["checked_out"] is not None)
    return {"count": len(links), "initialised": initialised, "modules": modules[:listed]}


def _checked_out(git: Git, repo: str, path: str) -> str | None:
    """The commit a submodule's worktree is at, or None when it is not a real, initialised
    folder (a plain empty folder is what an uninitialised submodule leaves)."""
    try:
        fd = open_folder(repo, path)
    except (UnsafePath, OSError):
        return None
    try:
        initialised = ".git" in os.listdir(fd)
    finally:
        os.close(fd)
    if not initialised:
        return None
    head = git.run(
        "rev-parse",
        "--verify",
        "--quiet",
        "HEAD^{commit}",
        cwd=os.path.join(repo, path),
        check=False,
    )
    return head.stdout.strip() or None


def _check_real_folder(repo: str, path: str) -> None:
    """The submodule's folder and every folder above it are real folders, not symlinks (the
    layout of CVE-2024-32002 puts a symlink where git will write a submodule)."""
    try:
        fd = open_folder(repo, path)
    except (UnsafePath, OSError):
        found = _first_not_real(repo, path)
        if found is not None:
            raise JobFailure(
                "submodule_refused", f"submodule path {path!r} is not a real folder: {found}"
            ) from None
        raise JobFailure("submodule_refused", f"submodule path {path!r} is not a folder") from None
    os.close(fd)


def _first_not_real(repo: str, path: str) -> str | None:
    """What stops `path` from being real folders all the way down — "'A' is a symlink",
    "'A/sub' is missing" — or None. Each part is looked at with lstat once the ones above it
    were found real, so that no symlink on the way is followed."""
    parts = path.split("/")
    for depth in range(1, len(parts) + 1):
        partial = "/".join(parts[:depth])
        try:
            info = os.lstat(os.path.join(repo, partial))
        except OSError:
            return f"{partial!r} is missing"
        if stat.S_ISLNK(info.st_mode):
            return f"{partial!r} is a symlink"
    return None
