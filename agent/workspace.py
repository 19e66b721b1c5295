"""Live workspaces: what a checkout holds beyond its upstream, and pulls and deletes that keep it.

A checkout is somebody's workspace, so nothing here loses work silently:

- `local_work` lists uncommitted changes, untracked files that are not ignored, and commits on
  no remote-tracking branch; a delete that is not forced refuses when there is any.
- `rebase` replays local commits and uncommitted changes onto the new upstream with
  `git merge-tree`, which merges in the object store only: the worktree, index and branch are
  touched once every merge is known to be clean, so a conflict leaves them as they were.
- `reset` saves the whole dirty state (local commits, tracked changes, untracked files) as one
  commit under `refs/gitfleet/backup/<timestamp>` before making the worktree equal upstream.
- `inspect` summarises the checkout for the project's status.

Every git command goes through the agent's hermetic `Git` (no hooks, no host config), and pull
has already refused any repository config key outside its allow-list, so no merge driver, filter
or hook from the repository can run here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent import lfs, submodules
from agent.errors import JobFailure
from agent.git import Git
from agent.listing import Listing
from agent.paths import tree_size

# Paths and commits listed in a status or a failure message; the counts are always whole.
MAX_LISTED = 20
BACKUP_REFS = "refs/gitfleet/backup"
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Gitfleet",
    "GIT_AUTHOR_EMAIL": "gitfleet@localhost",
    "GIT_COMMITTER_NAME": "Gitfleet",
    "GIT_COMMITTER_EMAIL": "gitfleet@localhost",
}

# Summaries a checkout may have beyond its files: each takes the job's Git, the checkout and
# its entries when the job has listed them already (see `inspect`), and returns a JSON-able
# summary, or None when it does not apply (no LFS files, no submodules), in which case the key
# is left out.
Summary = Callable[[Git, str, Listing | None], dict[str, Any] | None]
SUMMARIES: dict[str, Summary] = {
    # {"files": 2, "pointers_left": 0, "paths_left": []}
    "lfs": lfs.summary,
    # {"count": 1, "initialised": 1, "modules": [{"path", "commit", "checked_out"}]}
    "submodules": submodules.summary,
}


@dataclass(frozen=True)
class Head:
    """Where a checkout's HEAD is, as a job's result and its summary report it."""

    commit: str
    branch: str  # as `git symbolic-ref --short HEAD` names it; "" when detached
    upstream: str  # the branch ahead/behind count against: `branch`, or the project's
    # The commit of `refs/remotes/origin/<upstream>` when it was read with HEAD, else None.
    upstream_commit: str | None = None


@dataclass(frozen=True)
class LocalWork:
    """What a checkout holds that its upstream does not: changed paths and unpushed commits."""

    changed: list[str]  # porcelain lines such as "M train.py", "?? notes.txt"
    unpushed: list[str]  # "<short id> <subject>" of commits on no remote-tracking branch

    @property
    def empty(self) -> bool:
        return not self.changed and not self.unpushed

    def describe(self) -> str:
        """A bounded, readable list for a failure message."""
        lines = []
        if self.changed:
            lines.append(f"{len(self.changed)} changed or untracked path(s):")
            lines += [f"  {line}" for line in self.changed[:MAX_LISTED]]
            if len(self.changed) > MAX_LISTED:
                lines.append(f"  ... and {len(self.changed) - MAX_LISTED} more")
        if self.unpushed:
            lines.append(f"{len(self.unpushed)} commit(s) on no remote-tracking branch:")
            lines += [f"  {line}" for line in self.unpushed[:MAX_LISTED]]
            if len(self.unpushed) > MAX_LISTED:
                lines.append(f"  ... and {len(self.unpushed) - MAX_LISTED} more")
        return "\n".join(lines)


def changed_paths(git: Git, target: str, *, untracked: bool = True) -> list[str]:
    """`git status` lines ("XY path") of the checkout; untracked files that are ignored never."""
    status = git.run(
        "status", "--porcelain=v1", "-z", "--ignore-submodules=all",
        "--untracked-files=all" if untracked else "--untracked-files=no",
        repo=target,
    )  # fmt: skip
    entries = status.stdout.split("\0")
    lines = []
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if not entry:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":
            index += 1  # a rename's source follows as its own entry
        lines.append(f"{code.strip()} {path}")
    return lines


def local_work(git: Git, target: str) -> LocalWork:
    """Uncommitted changes, untracked-not-ignored files and commits no remote-tracking branch
    holds (of HEAD, of every local branch and of the backups a `reset` pull made)."""
    commits = git.run(
        "log", "--format=%h %s", "HEAD", "--branches", f"--glob={BACKUP_REFS}/*",
        "--not", "--remotes", repo=target,
    ).stdout.splitlines()  # fmt: skip
    return LocalWork(changed=changed_paths(git, target), unpushed=commits)


def read_head(git: Git, target: str, *, upstream: str, default: str) -> Head:
    """HEAD's commit and branch and, in the same `git rev-parse`, the commit of
    `refs/remotes/origin/<upstream>`, the upstream HEAD is expected to have (that of its branch,
    or of `default`, the project's branch, which a detached HEAD is counted against).

    `--revs-only` leaves out whatever does not resolve (a missing remote-tracking branch, a
    HEAD that is not a commit, an ambiguous name), so only an answer of three lines is taken;
    any other is asked again one question per command, as it always was.
    """
    answer = git.run(
        "rev-parse", "--revs-only", "HEAD^{commit}", f"refs/remotes/origin/{upstream}^{{commit}}",
        "--abbrev-ref=loose", "HEAD", repo=target, check=False,
    )  # fmt: skip
    lines = answer.stdout.splitlines()
    if answer.returncode == 0 and len(lines) == 3:
        commit, tracked, name = lines
        # `--abbrev-ref=loose` shortens as `git symbolic-ref --short` does, and names a
        # detached HEAD "HEAD" (HEAD on a branch named HEAD is ambiguous to it: no line).
        branch = "" if name == "HEAD" else name
        actual = branch or default
        return Head(commit, branch, actual, tracked if actual == upstream else None)
    commit = git.run("rev-parse", "--verify", "HEAD^{commit}", repo=target).stdout.strip()
    named = git.run("symbolic-ref", "--quiet", "--short", "HEAD", repo=target, check=False)
    branch = named.stdout.strip()
    return Head(commit, branch, branch or default)


def inspect(
    git: Git, target: str, head: Head, *, fresh: bool = False, entries: Listing | None = None
) -> dict[str, Any]:
    """The workspace summary the project's status shows: dirty paths, ahead/behind its
    upstream, size, and the summaries of `SUMMARIES` that apply.

    `fresh`: the checkout was just made by this job (a new folder, git's own checkout, LFS
    files put in place with the index updated), so nothing in it is changed or untracked, and
    `git status` is not run: every file was written in the same second as the index, so git
    would hash each one again to be sure (0.15 s for 80 MiB), on every clone.
    `entries`: HEAD's entries, listed already, when the index holds the same (a fresh clone:
    `read-tree -mu HEAD` wrote it), for the summaries; else each lists what it reads."""
    changed = [] if fresh else changed_paths(git, target)
    ahead, behind = _ahead_behind(git, target, head)
    summary: dict[str, Any] = {
        "dirty": {"count": len(changed), "paths": changed[:MAX_LISTED]},
        "ahead": ahead,
        "behind": behind,
        "size_bytes": tree_size(target),
    }
    for name, summarise in SUMMARIES.items():
        value = summarise(git, target, entries)
        if value is not None:
            summary[name] = value
    return summary


def _ahead_behind(git: Git, target: str, head: Head) -> tuple[int | None, int | None]:
    """Commits HEAD has that its upstream has not, and the other way round; (None, None)
    without a remote-tracking branch. HEAD at the upstream's own commit (a branch just cloned
    or pulled) is (0, 0) without a `git rev-list`."""
    if head.upstream_commit == head.commit:
        return 0, 0
    tracking = f"refs/remotes/origin/{head.upstream}"
    counts = git.run(
        "rev-list", "--left-right", "--count", f"HEAD...{tracking}", "--", repo=target, check=False
    )
    if counts.returncode == 0 and len(counts.stdout.split()) == 2:
        ahead, behind = (int(number) for number in counts.stdout.split())
        return ahead, behind
    return None, None


# --- rebase -----------------------------------------------------------------------------------


def rebase(git: Git, target: str, branch: str, upstream: str) -> None:
    """Replay local commits and uncommitted changes onto `upstream`, keeping untracked files.

    Raises JobFailure `conflict` naming the conflicting paths, with the checkout untouched.
    """
    head = _rev(git, target, "HEAD")
    new_tip = _rev(git, target, upstream)
    base = git.run("merge-base", head, new_tip, repo=target, check=False).stdout.strip()
    if base == new_tip:
        return  # nothing new upstream: the checkout, local work and all, is left as it is
    if not base:
        raise JobFailure("conflict", f"{branch} shares no history with the remote branch")
    merges = git.run("rev-list", "--merges", f"{base}..{head}", repo=target).stdout.split()
    if merges:
        raise JobFailure(
            "conflict", f"{len(merges)} local merge commit(s): rebase them by hand, or pull "
            "with strategy reset (which backs them up)",
        )  # fmt: skip
    tip = new_tip
    with tempfile.TemporaryDirectory(prefix="gitfleet-rebase-") as scratch:
        for commit in git.run(
            "rev-list", "--reverse", f"{base}..{head}", repo=target
        ).stdout.split():
            tree = _merged_tree(git, target, base=f"{commit}^", ours=tip, theirs=commit)
            tip = _replayed_commit(git, target, scratch, commit, tree, parent=tip)
        dirty = _worktree_commit(git, target, scratch, head)
        final_tree = _tree(git, target, tip)
        if dirty is not None:
            final_tree = _merged_tree(git, target, base=head, ours=tip, theirs=dirty)
        clashes = _untracked_in_the_way(git, target, final_tree)
        if clashes:
            raise _conflict(clashes, "untracked files the new upstream would overwrite")
    git.run("update-ref", "-m", "gitfleet: rebase", f"refs/heads/{branch}", tip, head, repo=target)
    # The index and worktree become the merged state, then the index alone goes back to the new
    # tip, so that what was uncommitted before stays uncommitted.
    git.run("read-tree", "--reset", "-u", final_tree, repo=target)
    git.run("read-tree", tip, repo=target)
    git.run("update-index", "-q", "--refresh", repo=target, check=False)


def _rev(git: Git, target: str, name: str) -> str:
    return git.run("rev-parse", "--verify", f"{name}^{{commit}}", repo=target).stdout.strip()


def _tree(git: Git, target: str, commit: str) -> str:
    return git.run("rev-parse", "--verify", f"{commit}^{{tree}}", repo=target).stdout.strip()


def _merged_tree(git: Git, target: str, *, base: str, ours: str, theirs: str) -> str:
    """The three-way merge of `ours` and `theirs` from `base`, as a tree; JobFailure `conflict`
    with the paths if it does not merge cleanly.

    git 2.39's merge-tree finds the merge base itself, so `ours` is first given a stand-in
    commit (its tree, `base` as parent): the base of that and `theirs` is then `base`.
    """
    stand_in = git.run(
        "commit-tree", _tree(git, target, ours), "-p", base, "-m", "gitfleet: rebase step",
        repo=target, env=_IDENTITY,
    ).stdout.strip()  # fmt: skip
    merged = git.run(
        "merge-tree", "--write-tree", "--name-only", "--no-messages", stand_in, theirs,
        repo=target, check=False,
    )  # fmt: skip
    lines = merged.stdout.splitlines()
    if merged.returncode == 0 and lines:
        return lines[0].strip()
    if merged.returncode == 1:
        paths = sorted({line for line in lines[1:] if line})
        raise _conflict(paths, "conflicting paths")
    raise git.failure(merged, where=target)


def _conflict(paths: list[str], what: str) -> JobFailure:
    listed = "\n".join(f"  {path}" for path in paths[:MAX_LISTED])
    more = f"\n  ... and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else ""
    return JobFailure(
        "conflict",
        f"the checkout was left as it was; {len(paths)} {what}:\n{listed}{more}",
    )


def _replayed_commit(
    git: Git, target: str, scratch: str, commit: str, tree: str, *, parent: str
) -> str:
    """`commit` again with `tree` on `parent`: same author, date and message."""
    fields = git.run(
        "show", "-s", "--format=%an%x00%ae%x00%ad%x00%cn%x00%ce", "--date=raw", commit,
        repo=target,
    ).stdout.rstrip("\n").split("\0")  # fmt: skip
    message = os.path.join(scratch, "message")
    raw = git.run("cat-file", "commit", commit, repo=target).stdout
    with open(message, "w", encoding="utf-8") as handle:
        handle.write(raw.partition("\n\n")[2])
    env = {
        "GIT_AUTHOR_NAME": fields[0],
        "GIT_AUTHOR_EMAIL": fields[1],
        "GIT_AUTHOR_DATE": fields[2],
        "GIT_COMMITTER_NAME": fields[3],
        "GIT_COMMITTER_EMAIL": fields[4],
    }
    return git.run(
        "commit-tree", tree, "-p", parent, "-F", message, repo=target, env=env
    ).stdout.strip()


def _worktree_commit(git: Git, target: str, scratch: str, head: str) -> str | None:
    """A commit on `head` of the tracked files as they are in the worktree (staged or not), or
    None when they equal `head`. The real index is copied, never written."""
    index = os.path.join(scratch, "index")
    real_index = os.path.join(target, ".git", "index")
    if os.path.lexists(real_index):
        # copy2 keeps the index's mtime, which git's racy-entry check compares files against.
        shutil.copy2(real_index, index, follow_symlinks=False)
    env = {**_IDENTITY, "GIT_INDEX_FILE": index}
    git.run("add", "--update", "--", ".", repo=target, env=env)
    tree = git.run("write-tree", repo=target, env=env).stdout.strip()
    if tree == _tree(git, target, head):
        return None
    return git.run(
        "commit-tree", tree, "-p", head, "-m", "gitfleet: uncommitted changes",
        repo=target, env=_IDENTITY,
    ).stdout.strip()  # fmt: skip


def _untracked_in_the_way(git: Git, target: str, tree: str) -> list[str]:
    """Untracked (not ignored) paths where `tree` has a file, a file in place of one of their
    folders, or a folder in place of them."""
    untracked = [line[3:] for line in changed_paths(git, target) if line.startswith("?? ")]
    if not untracked:
        return []
    files = set(git.run("ls-tree", "-r", "--name-only", "-z", tree, repo=target).stdout.split("\0"))
    folders = {parent for path in files for parent in _parents(path)}
    return sorted(
        path
        for path in untracked
        if path in files or path in folders or any(p in files for p in _parents(path))
    )


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:depth]) for depth in range(1, len(parts))]


# --- reset ------------------------------------------------------------------------------------


def backup(git: Git, target: str, upstream: str) -> str | None:
    """Save every local commit and every uncommitted change (untracked, not ignored, files
    included) as one commit under `refs/gitfleet/backup/<timestamp>`; return that ref, or None
    when there is nothing the upstream does not already hold."""
    head = _rev(git, target, "HEAD")
    unpushed = git.run("rev-list", "--count", head, "--not", upstream, repo=target)
    with tempfile.TemporaryDirectory(prefix="gitfleet-backup-") as scratch:
        env = {**_IDENTITY, "GIT_INDEX_FILE": os.path.join(scratch, "index")}
        git.run("read-tree", head, repo=target, env=env)
        git.run("add", "--all", "--", ".", repo=target, env=env)
        tree = git.run("write-tree", repo=target, env=env).stdout.strip()
    if tree == _tree(git, target, head) and unpushed.stdout.strip() == "0":
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    commit = git.run(
        "commit-tree", tree, "-p", head, "-m",
        f"gitfleet: backup of the workspace before a reset to {upstream}",
        repo=target, env=_IDENTITY,
    ).stdout.strip()  # fmt: skip
    ref = f"{BACKUP_REFS}/{stamp}"
    # The empty old value makes update-ref refuse to overwrite an existing backup.
    git.run("update-ref", "-m", "gitfleet: backup", ref, commit, "", repo=target)
    return ref


def reset(git: Git, target: str, upstream: str) -> str | None:
    """Back the workspace up (see `backup`), then make it equal `upstream`: tracked files reset,
    untracked files removed, ignored files kept. Returns the backup ref, if one was made."""
    untracked = [line[3:] for line in changed_paths(git, target) if line.startswith("?? ")]
    ref = backup(git, target, upstream)
    git.run("reset", "--hard", "--quiet", upstream, repo=target)
    # Exactly the untracked files the backup holds go: `git clean` would judge by the ignore
    # rules after the reset, and so could remove an ignored file that was never backed up.
    tracked = set(git.run("ls-files", "-z", repo=target).stdout.split("\0"))
    for path in untracked:
        if path not in tracked:
            remove_untracked(target, path)
    return ref


def remove_untracked(root: str, relative: str) -> None:
    """Unlink `root/relative` and the folders it leaves empty, through folder descriptors opened
    without following symlinks, so that a folder swapped for a link leads nowhere."""
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    fds = [os.open(root, flags)]
    try:
        for part in parts[:-1]:
            try:
                fds.append(os.open(part, flags | os.O_NOFOLLOW, dir_fd=fds[-1]))
            except (FileNotFoundError, NotADirectoryError, OSError):
                return
        try:
            os.unlink(parts[-1], dir_fd=fds[-1])
        except (FileNotFoundError, IsADirectoryError):
            return
        for depth in range(len(parts) - 1, 0, -1):
            try:
                os.rmdir(parts[depth - 1], dir_fd=fds[depth - 1])
            except OSError:
                break  # not empty: it holds tracked or ignored files
    finally:
        for fd in fds:
            os.close(fd)
