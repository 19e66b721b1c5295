"""What a clone asks git, and that asking less reports the same.

A plain clone of a branch runs four git processes: `clone` (which finds the branch or tag
itself, no `ls-remote` first), `read-tree`, one `ls-tree` whose entries serve the submodule
count and both summaries, and one `rev-parse` for HEAD's commit, its branch and its upstream.
Each shortcut is held to the long way: a fresh clone's result and summary against an inspect
job of the same checkout, and HEAD as the agent reads it against git's own commands.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import pytest

from agent.errors import JobFailure
from tests.agent.test_submodules import add_submodule
from tests.support.gitservers import Upstream, git
from tests.support.jobs import run_job
from tests.support.lfsserver import commit_lfs_files


@pytest.fixture
def git_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `git` first on the agent's PATH that logs its arguments, then runs the real git."""
    real = shutil.which("git")
    assert real is not None
    folder = tmp_path / "logging-git"
    folder.mkdir()
    log = tmp_path / "git-calls"
    script = folder / "git"
    script.write_text(
        "#!/bin/sh\n"
        f'for arg in "$@"; do printf \'%s\\t\' "$arg"; done >> {shlex.quote(str(log))}\n'
        f"echo >> {shlex.quote(str(log))}\n"
        f'exec {shlex.quote(real)} "$@"\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return log


def subcommands(log: Path) -> list[str]:
    """The git command of each logged call, past the agent's `-c` settings and repo pins."""
    found = []
    for line in log.read_text().splitlines():
        args = line.split("\t")[:-1]
        while args[0] == "-c" or args[0].startswith(("--git-dir=", "--work-tree=")):
            args = args[2:] if args[0] == "-c" else args[1:]
        found.append(args[0])
    return found


def test_a_plain_clone_of_a_branch_runs_four_git_processes(config, upstream, git_daemon, git_calls):
    result = run_job(config, git_url=git_daemon.url(upstream.name))

    assert subcommands(git_calls) == ["clone", "read-tree", "ls-tree", "rev-parse"]
    assert (result.commit, result.branch, result.ref_kind) == (upstream.head(), "main", "branch")
    assert (result.workspace["ahead"], result.workspace["behind"]) == (0, 0)


def test_a_ref_that_is_neither_a_branch_nor_a_tag_says_so(config, upstream, git_daemon):
    with pytest.raises(JobFailure) as raised:
        run_job(config, git_url=git_daemon.url(upstream.name), branch="nope")

    assert raised.value.code == "branch_not_found"
    assert raised.value.message == "nope is neither a branch nor a tag of the remote"
    assert os.listdir(config.projects_path) == []


def test_a_branch_wins_over_a_tag_of_the_same_name(config, upstream, git_daemon):
    first = upstream.head()
    git("tag", "v2", first, cwd=upstream.work)
    git("push", "--quiet", "origin", "refs/tags/v2", cwd=upstream.work)
    tip = upstream.commit({"new.txt": "new\n"}, "on v2", branch="v2")

    result = run_job(config, git_url=git_daemon.url(upstream.name), branch="v2")

    assert (result.ref, result.ref_kind, result.commit) == ("v2", "branch", tip)


# Repositories beside the plain one: each changes `upstream` (a `served` repository of its
# own, a fixture from `request` if it needs one) and returns the job's options.
def _plain(upstream: Upstream, served: Path, request) -> dict:
    return {}


def _tag(upstream: Upstream, served: Path, request) -> dict:
    git("tag", "v1.0", upstream.head(), cwd=upstream.work)
    git("push", "--quiet", "origin", "refs/tags/v1.0", cwd=upstream.work)
    upstream.commit({"later.txt": "later\n"}, "after the tag")
    return {"branch": "v1.0"}


def _commit(upstream: Upstream, served: Path, request) -> dict:
    first = upstream.head()
    upstream.commit({"later.txt": "later\n"}, "after the commit")
    return {"branch": first}


def _branch_and_tag(upstream: Upstream, served: Path, request) -> dict:
    git("tag", "v2", upstream.head(), cwd=upstream.work)
    git("push", "--quiet", "origin", "refs/tags/v2", cwd=upstream.work)
    upstream.commit({"new.txt": "new\n"}, "on v2", branch="v2")
    return {"branch": "v2"}


def _submodule(upstream: Upstream, served: Path, request) -> dict:
    leaf = Upstream(served, "leaf")
    add_submodule(upstream, "libs/leaf", "../leaf.git", leaf.commit({"leaf.txt": "leaf\n"}))
    upstream.commit({}, "with leaf")
    return {}


def _submodule_recursive(upstream: Upstream, served: Path, request) -> dict:
    return {**_submodule(upstream, served, request), "submodules": "recursive"}


def _gitlink_without_gitmodules(upstream: Upstream, served: Path, request) -> dict:
    commit = upstream.head()
    git("update-index", "--add", "--cacheinfo", f"160000,{commit},vendored", cwd=upstream.work)
    (upstream.work / "vendored").mkdir()
    upstream.commit({}, "a gitlink and no .gitmodules")
    return {}


def _attributes_without_lfs(upstream: Upstream, served: Path, request) -> dict:
    upstream.commit({".gitattributes": "*.txt text eol=lf\n", "notes.txt": "notes\n"}, "text")
    return {}


def _lfs_not_asked_for(upstream: Upstream, served: Path, request) -> dict:
    lfs_server = request.getfixturevalue("lfs_server")
    commit_lfs_files(upstream, lfs_server.endpoint(), {"weights.bin": b"\x00weights\xff" * 100})
    return {"lfs": False}


def _sparse(upstream: Upstream, served: Path, request) -> dict:
    upstream.commit({"src/app.py": "x = 1\n", "docs/notes.md": "notes\n"}, "folders")
    return {"sparse": ["src"]}


LAYOUTS = {
    "plain": _plain,
    "tag": _tag,
    "commit": _commit,
    "branch_and_tag": _branch_and_tag,
    "submodule": _submodule,
    "submodule_recursive": _submodule_recursive,
    "gitlink_without_gitmodules": _gitlink_without_gitmodules,
    "attributes_without_lfs": _attributes_without_lfs,
    "lfs_not_asked_for": _lfs_not_asked_for,
    "sparse": _sparse,
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_fresh_clone_reports_what_an_inspect_of_it_finds(
    request, config, served, upstream, git_daemon, layout
):
    options = LAYOUTS[layout](upstream, served, request)
    url = git_daemon.url(upstream.name)

    cloned = run_job(config, git_url=url, **options)
    inspected = run_job(config, kind="inspect", git_url=url, **options)

    assert cloned.workspace == inspected.workspace
    assert (cloned.commit, cloned.branch) == (inspected.commit, inspected.branch)
    head = (cloned.commit, cloned.branch, cloned.workspace["ahead"], cloned.workspace["behind"])
    assert head == git_answers(Path(cloned.local_path), options.get("branch", "main"))
    if layout in ("submodule", "gitlink_without_gitmodules"):
        assert cloned.submodules_skipped == cloned.workspace["submodules"]["count"] == 1
    if layout == "lfs_not_asked_for":
        assert cloned.workspace["lfs"]["pointers_left"] == 1


def _on_branch(checkout: Path) -> None:
    """As cloned: on main, level with origin/main."""


def _ahead(checkout: Path) -> None:
    (checkout / "mine.txt").write_text("mine\n")
    git("add", "mine.txt", cwd=checkout)
    git("commit", "--quiet", "-m", "local", cwd=checkout)


def _behind(checkout: Path) -> None:
    _ahead(checkout)
    git("update-ref", "refs/remotes/origin/main", "HEAD", cwd=checkout)
    git("reset", "--quiet", "--hard", "HEAD~1", cwd=checkout)


def _detached(checkout: Path) -> None:
    git("checkout", "--quiet", "--detach", cwd=checkout)


def _tag_named_like_the_branch(checkout: Path) -> None:
    git("tag", "main", "HEAD", cwd=checkout)


def _no_upstream(checkout: Path) -> None:
    git("update-ref", "-d", "refs/remotes/origin/main", cwd=checkout)


def _branch_named_head(checkout: Path) -> None:
    git("update-ref", "refs/heads/HEAD", "HEAD", cwd=checkout)
    git("symbolic-ref", "HEAD", "refs/heads/HEAD", cwd=checkout)


HEAD_STATES = [
    _on_branch,
    _ahead,
    _behind,
    _detached,
    _tag_named_like_the_branch,
    _no_upstream,
    _branch_named_head,
]


def git_answers(checkout: Path, default: str) -> tuple[str, str, int | None, int | None]:
    """HEAD's commit, its branch, and ahead/behind, one git command each (the long way)."""
    commit = git("rev-parse", "--verify", "HEAD^{commit}", cwd=checkout).strip()
    try:
        branch = git("symbolic-ref", "--quiet", "--short", "HEAD", cwd=checkout).strip()
    except AssertionError:
        branch = ""
    try:
        counts = git(
            "rev-list", "--left-right", "--count", f"HEAD...refs/remotes/origin/{branch or default}",
            "--", cwd=checkout,
        ).split()  # fmt: skip
    except AssertionError:
        return commit, branch, None, None
    return commit, branch, int(counts[0]), int(counts[1])


@pytest.mark.parametrize("state", HEAD_STATES, ids=lambda state: state.__name__.strip("_"))
def test_head_and_ahead_behind_are_what_git_says(config, upstream, git_daemon, state):
    url = git_daemon.url(upstream.name)
    checkout = Path(run_job(config, git_url=url).local_path)
    git("config", "user.name", "Person", cwd=checkout)
    git("config", "user.email", "person@example.com", cwd=checkout)
    state(checkout)

    inspected = run_job(config, kind="inspect", git_url=url)

    found = inspected.workspace
    assert (inspected.commit, inspected.branch, found["ahead"], found["behind"]) == git_answers(
        checkout, "main"
    )
