"""Live workspaces: pull strategies that keep local work, deletes that refuse to lose it, and
the workspace summary every job reports."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.errors import JobFailure
from tests.support.gitservers import git
from tests.support.jobs import run_job, worktree_snapshot


@pytest.fixture
def checkout(config, upstream, git_daemon) -> Path:
    upstream.commit({"train.py": "lr = 1\n", "data/notes.md": "notes\n"}, "more files")
    result = run_job(config, git_url=git_daemon.url(upstream.name))
    git("config", "user.name", "Person", cwd=result.local_path)
    git("config", "user.email", "person@example.com", cwd=result.local_path)
    return Path(result.local_path)


def pull(config, upstream, git_daemon, strategy, **overrides):
    return run_job(
        config, kind="pull", git_url=git_daemon.url(upstream.name), strategy=strategy, **overrides
    )


def local_work(checkout: Path) -> str:
    """An edited tracked file, a local commit and an untracked file."""
    (checkout / "mine.py").write_text("committed locally\n")
    git("add", "mine.py", cwd=checkout)
    git("commit", "--quiet", "-m", "my work", cwd=checkout)
    (checkout / "train.py").write_text("lr = 2  # my edit\n")
    (checkout / "scratch.txt").write_text("untracked\n")
    return git("rev-parse", "HEAD", cwd=checkout).strip()


def test_ff_only_refuses_a_dirty_checkout_and_lists_its_files(
    config, upstream, git_daemon, checkout
):
    upstream.commit({"README.md": "new\n"})
    for number in range(25):
        (checkout / "data" / f"f{number}.md").write_text("x")
    git("add", "data", cwd=checkout)
    before = worktree_snapshot(checkout)

    with pytest.raises(JobFailure) as raised:
        pull(config, upstream, git_daemon, "ff-only")

    assert raised.value.code == "dirty_worktree"
    assert "25 changed or untracked path(s)" in raised.value.message
    assert "A data/f0.md" in raised.value.message
    assert "... and 5 more" in raised.value.message
    assert worktree_snapshot(checkout) == before


def test_rebase_keeps_commits_edits_and_untracked_files(config, upstream, git_daemon, checkout):
    local = local_work(checkout)
    authored = git("log", "-1", "--format=%an %ae %ad %s", cwd=checkout)
    new = upstream.commit({"README.md": "upstream edit\n"}, "upstream")

    result = pull(config, upstream, git_daemon, "rebase")

    assert git("rev-parse", "HEAD~1", cwd=checkout).strip() == new
    assert git("log", "-1", "--format=%an %ae %ad %s", cwd=checkout) == authored
    assert result.commit != local
    assert (checkout / "README.md").read_text() == "upstream edit\n"
    assert (checkout / "mine.py").read_text() == "committed locally\n"
    assert (checkout / "train.py").read_text() == "lr = 2  # my edit\n"
    assert (checkout / "scratch.txt").read_text() == "untracked\n"
    assert git("status", "--porcelain", cwd=checkout).splitlines() == [
        " M train.py",
        "?? scratch.txt",
    ]
    assert result.workspace["ahead"] == 1 and result.workspace["behind"] == 0
    assert result.workspace["dirty"] == {"count": 2, "paths": ["M train.py", "?? scratch.txt"]}


def test_rebase_merges_edits_to_other_parts_of_the_same_file(
    config, upstream, git_daemon, checkout
):
    upstream.commit({"train.py": "lr = 1\n\n\n\nepochs = 1\n"}, "base")
    pull(config, upstream, git_daemon, "ff-only")
    (checkout / "train.py").write_text("lr = 5\n\n\n\nepochs = 1\n")
    upstream.commit({"train.py": "lr = 1\n\n\n\nepochs = 9\n"}, "upstream")

    pull(config, upstream, git_daemon, "rebase")

    assert (checkout / "train.py").read_text() == "lr = 5\n\n\n\nepochs = 9\n"


@pytest.mark.parametrize("clash", ["edited", "committed", "untracked"])
def test_a_rebase_conflict_leaves_the_checkout_byte_for_byte(
    config, upstream, git_daemon, checkout, clash
):
    if clash == "edited":
        (checkout / "train.py").write_text("lr = 3\n")
    elif clash == "committed":
        (checkout / "train.py").write_text("lr = 3\n")
        git("commit", "--quiet", "-am", "mine", cwd=checkout)
    else:
        (checkout / "new.py").write_text("mine\n")
    (checkout / "scratch.txt").write_text("keep me\n")
    upstream.commit({"train.py": "lr = 4\n", "new.py": "theirs\n"}, "upstream")
    before = worktree_snapshot(checkout)

    with pytest.raises(JobFailure) as raised:
        pull(config, upstream, git_daemon, "rebase")

    assert raised.value.code == "conflict"
    assert ("new.py" if clash == "untracked" else "train.py") in raised.value.message
    assert worktree_snapshot(checkout) == before


def test_reset_backs_up_everything_then_equals_upstream(config, upstream, git_daemon, checkout):
    local = local_work(checkout)
    (checkout / ".gitignore").write_text("*.log\n")
    git("add", ".gitignore", cwd=checkout)
    (checkout / "run.log").write_text("ignored\n")
    new = upstream.commit({"README.md": "upstream edit\n"}, "upstream")

    result = pull(config, upstream, git_daemon, "reset")

    assert result.commit == new
    assert result.backup_ref.startswith("refs/gitfleet/backup/")
    # run.log was ignored, so not backed up: it is kept, though the reset dropped the
    # uncommitted .gitignore that ignored it.
    assert git("status", "--porcelain", cwd=checkout) == "?? run.log\n"
    assert (checkout / "run.log").read_text() == "ignored\n"
    assert not (checkout / "scratch.txt").exists() and not (checkout / "mine.py").exists()
    backup = result.backup_ref
    assert git("rev-parse", f"{backup}^", cwd=checkout).strip() == local
    # The person gets the work back with plain git.
    git("checkout", "--quiet", "-b", "rescued", backup, cwd=checkout)
    assert (checkout / "train.py").read_text() == "lr = 2  # my edit\n"
    assert (checkout / "scratch.txt").read_text() == "untracked\n"
    assert (checkout / "mine.py").read_text() == "committed locally\n"
    assert (checkout / "run.log").read_text() == "ignored\n"


def test_a_backup_counts_as_local_work_for_delete(config, upstream, git_daemon, checkout):
    (checkout / "notes.txt").write_text("mine\n")
    upstream.commit({"README.md": "upstream edit\n"})
    pull(config, upstream, git_daemon, "reset")
    assert git("status", "--porcelain", cwd=checkout) == ""

    with pytest.raises(JobFailure) as raised:
        delete(config)

    assert raised.value.code == "local_changes"
    assert "gitfleet: backup" in raised.value.message
    assert checkout.exists()


def test_reset_of_a_clean_checkout_makes_no_backup(config, upstream, git_daemon, checkout):
    new = upstream.commit({"README.md": "upstream edit\n"})

    result = pull(config, upstream, git_daemon, "reset")

    assert result.commit == new
    assert result.backup_ref is None
    assert git("for-each-ref", "refs/gitfleet", cwd=checkout) == ""


def delete(config, **overrides):
    return run_job(config, kind="delete", git_url="", branch="", **overrides)


@pytest.mark.parametrize("work", ["edited", "untracked", "committed"])
def test_delete_refuses_to_lose_local_work(config, checkout, work):
    if work == "edited":
        (checkout / "train.py").write_text("mine\n")
    elif work == "untracked":
        (checkout / "notes.txt").write_text("mine\n")
    else:
        git("commit", "--quiet", "--allow-empty", "-m", "unpushed", cwd=checkout)
    before = worktree_snapshot(checkout)

    with pytest.raises(JobFailure) as raised:
        delete(config)

    assert raised.value.code == "local_changes"
    assert {"edited": "M train.py", "untracked": "?? notes.txt", "committed": "unpushed"}[
        work
    ] in raised.value.message
    assert worktree_snapshot(checkout) == before


def test_delete_of_ignored_files_only_goes_ahead(config, upstream, git_daemon, checkout):
    upstream.commit({".gitignore": "*.log\n"})
    pull(config, upstream, git_daemon, "ff-only")
    (checkout / "run.log").write_text("ignored\n")

    delete(config)

    assert not checkout.exists()


def test_forced_delete_removes_local_work(config, checkout):
    (checkout / "notes.txt").write_text("mine\n")

    delete(config, force=True)

    assert not checkout.exists()


def test_inspect_sees_edits_made_on_the_node_and_changes_nothing(config, checkout, upstream):
    (checkout / "train.py").write_text("edited on the node\n")
    (checkout / "notes.txt").write_text("new\n")
    git("commit", "--quiet", "--allow-empty", "-m", "local", cwd=checkout)
    before = worktree_snapshot(checkout)

    result = run_job(config, kind="inspect", git_url="", branch="main")

    assert result.workspace["dirty"] == {"count": 2, "paths": ["M train.py", "?? notes.txt"]}
    assert (result.workspace["ahead"], result.workspace["behind"]) == (1, 0)
    assert result.workspace["size_bytes"] == result.size_bytes > 0
    assert worktree_snapshot(checkout) == before


def test_rebase_runs_no_hook_and_no_configured_merge_driver(
    config, upstream, git_daemon, checkout, tmp_path
):
    marker = tmp_path / "ran"
    upstream.commit({".gitattributes": "*.py merge=evil\n"})
    pull(config, upstream, git_daemon, "ff-only")
    hook = checkout / ".git" / "hooks" / "post-rewrite"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    (checkout / "train.py").write_text("lr = 7\n")
    upstream.commit({"README.md": "x\n"})

    pull(config, upstream, git_daemon, "rebase")
    assert not marker.exists()

    git("config", "merge.evil.driver", f"touch {marker}", cwd=checkout)
    with pytest.raises(JobFailure) as raised:
        pull(config, upstream, git_daemon, "rebase")
    assert raised.value.code == "unsafe_path"
    assert not marker.exists()
    assert subprocess.run(["test", "-e", str(marker)]).returncode == 1


def test_rebase_keeps_untracked_files_inside_tracked_folders(
    config, upstream, git_daemon, checkout
):
    (checkout / "data" / "mine.csv").write_text("1,2\n")
    new = upstream.commit({"data/theirs.md": "new\n"})

    assert pull(config, upstream, git_daemon, "rebase").commit == new
    assert (checkout / "data" / "mine.csv").read_text() == "1,2\n"


def test_rebase_with_nothing_new_upstream_touches_nothing(config, upstream, git_daemon, checkout):
    local_work(checkout)
    before = worktree_snapshot(checkout)
    edited = (checkout / "train.py").stat().st_mtime_ns

    pull(config, upstream, git_daemon, "rebase")

    assert worktree_snapshot(checkout) == before
    assert (checkout / "train.py").stat().st_mtime_ns == edited  # not even rewritten
