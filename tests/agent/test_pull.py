"""pull: fetch the tracked branch, then fast-forward only; anything else leaves the checkout alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import JobFailure
from tests.support.gitservers import git
from tests.support.jobs import run_job, worktree_snapshot


@pytest.fixture
def checkout(config, upstream, git_daemon) -> Path:
    result = run_job(config, git_url=git_daemon.url(upstream.name))
    return Path(result.local_path)


def pull(config, upstream, git_daemon, **overrides):
    return run_job(config, kind="pull", git_url=git_daemon.url(upstream.name), **overrides)


def test_pull_fast_forwards_to_the_new_upstream_commit(config, upstream, git_daemon, checkout):
    new = upstream.commit({"README.md": "hello again\n", "new.txt": "new\n"}, "second")

    result = pull(config, upstream, git_daemon)

    assert result.commit == new
    assert result.branch == "main"
    assert result.local_path == str(checkout)
    assert (checkout / "README.md").read_text() == "hello again\n"
    assert (checkout / "new.txt").read_text() == "new\n"
    assert git("rev-parse", "HEAD", cwd=checkout).strip() == new
    assert git("status", "--porcelain", cwd=checkout) == ""


def test_pull_with_nothing_new_succeeds_and_changes_nothing(config, upstream, git_daemon, checkout):
    before = worktree_snapshot(checkout)

    result = pull(config, upstream, git_daemon)

    assert result.commit == upstream.head()
    assert worktree_snapshot(checkout) == before


def test_pull_keeps_untracked_files_that_are_not_in_the_way(config, upstream, git_daemon, checkout):
    (checkout / "outputs.log").write_text("mine")
    new = upstream.commit({"other.txt": "x"})

    assert pull(config, upstream, git_daemon).commit == new
    assert (checkout / "outputs.log").read_text() == "mine"


def test_pull_of_a_shallow_clone(config, upstream, git_daemon, tmp_path):
    upstream.commit({"a": "1"})
    run_job(config, git_url=git_daemon.url(upstream.name), depth=1, target_path="1_shallow")
    new = upstream.commit({"b": "2"})

    result = pull(config, upstream, git_daemon, target_path="1_shallow", depth=1)

    assert result.commit == new
    assert git("rev-list", "--count", "HEAD", cwd=result.local_path).strip() == "2"


@pytest.mark.parametrize("change", ["modified", "staged", "deleted"])
def test_a_dirty_checkout_fails_and_is_left_byte_for_byte(
    config, upstream, git_daemon, checkout, change
):
    upstream.commit({"README.md": "upstream edit\n"})
    if change in ("modified", "staged"):
        (checkout / "README.md").write_text("local edit\n")
    else:
        (checkout / "README.md").unlink()
    if change == "staged":
        git("add", "README.md", cwd=checkout)
    before = worktree_snapshot(checkout)

    with pytest.raises(JobFailure) as raised:
        pull(config, upstream, git_daemon)

    assert raised.value.code == "dirty_worktree"
    assert "README.md" in raised.value.message
    assert worktree_snapshot(checkout) == before


def test_an_untracked_file_in_the_way_fails_dirty_and_is_left_alone(
    config, upstream, git_daemon, checkout
):
    upstream.commit({"results.csv": "upstream\n"})
    (checkout / "results.csv").write_text("local, untracked\n")
    before = worktree_snapshot(checkout)

    with pytest.raises(JobFailure) as raised:
        pull(config, upstream, git_daemon)

    assert raised.value.code == "dirty_worktree"
    assert worktree_snapshot(checkout) == before


def test_a_rewritten_upstream_fails_not_fast_forward_and_is_left_alone(
    config, upstream, git_daemon, checkout
):
    upstream.rewrite_history({"other.txt": "history rewritten\n"})
    before = worktree_snapshot(checkout)

    with pytest.raises(JobFailure) as raised:
        pull(config, upstream, git_daemon)

    assert raised.value.code == "not_fast_forward"
    assert worktree_snapshot(checkout) == before


def test_a_local_commit_plus_a_new_upstream_one_fails_not_fast_forward(
    config, upstream, git_daemon, checkout
):
    (checkout / "local.txt").write_text("local\n")
    git("add", "local.txt", cwd=checkout)
    git("commit", "-q", "-m", "local", cwd=checkout)
    upstream.commit({"remote.txt": "remote\n"})
    before = worktree_snapshot(checkout)

    with pytest.raises(JobFailure) as raised:
        pull(config, upstream, git_daemon)

    assert raised.value.code == "not_fast_forward"
    assert worktree_snapshot(checkout) == before


def test_pull_of_a_missing_project_fails_not_a_checkout(config, upstream, git_daemon):
    with pytest.raises(JobFailure) as raised:
        pull(config, upstream, git_daemon, target_path="9_missing")

    assert raised.value.code == "not_a_checkout"


def test_pull_of_a_folder_without_git_fails_not_a_checkout(config, upstream, git_daemon):
    (Path(config.projects_path) / "9_plain").mkdir()

    with pytest.raises(JobFailure) as raised:
        pull(config, upstream, git_daemon, target_path="9_plain")

    assert raised.value.code == "not_a_checkout"


def test_pull_through_a_symlink_fails_unsafe_path(config, upstream, git_daemon, checkout):
    (Path(config.projects_path) / "9_link").symlink_to(checkout)

    with pytest.raises(JobFailure) as raised:
        pull(config, upstream, git_daemon, target_path="9_link")

    assert raised.value.code == "unsafe_path"


def test_pull_of_another_branch_than_checked_out_fails(config, upstream, git_daemon, checkout):
    upstream.commit({"f": "1"}, branch="feature")

    with pytest.raises(JobFailure) as raised:
        pull(config, upstream, git_daemon, branch="feature")

    assert raised.value.code == "git_error"
    assert "on main, not on feature" in raised.value.message


def test_pull_of_a_branch_deleted_upstream_fails_branch_not_found(
    config, upstream, git_daemon, checkout
):
    git("update-ref", "-d", "refs/heads/main", cwd=upstream.bare)

    with pytest.raises(JobFailure) as raised:
        pull(config, upstream, git_daemon)

    assert raised.value.code == "branch_not_found"
