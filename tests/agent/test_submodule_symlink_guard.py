"""The symlinked-submodule-path guard of `agent.submodules`: a submodule whose folder, or a
folder above it, is a symlink in the worktree is refused before anything is fetched.

git's index cannot hold such a layout (a symlink `A` beside a gitlink `A/sub` is a
file/folder conflict), yet a worktree can come to it on disk, which is what CVE-2024-32002
relies on. So the layout is made on disk: a real checkout with its submodule skipped, then the
folder swapped for a symlink, then the agent's submodule step called directly."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from agent import checkout, submodules
from agent.errors import JobFailure
from agent.git import Git
from gitpolicy import parse_git_url
from tests.agent.test_submodules import add_submodule
from tests.support.gitservers import Upstream
from tests.support.jobs import run_job


@pytest.fixture
def skipped_submodule(config, served, http_git, tmp_path):
    """A checkout of `top` (over HTTP, so that every request is recorded) whose submodule at
    A/sub was skipped, and a folder outside the checkout for symlinks to point at."""
    leaf = Upstream(served, "leaf")
    leaf_commit = leaf.commit({"leaf.txt": "leaf\n"}, "leaf")
    top = Upstream(served, "top")
    top.commit({"top.txt": "top\n"}, "top")
    add_submodule(top, "A/sub", "../leaf.git", leaf_commit)
    top.commit({}, "with a submodule at A/sub")
    url = http_git.url("git", top.name)
    result = run_job(config, git_url=url)
    assert result.submodules_skipped == 1
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    return Path(result.local_path), url, outside


def swap_for_symlink(folder: Path, target: Path) -> None:
    shutil.rmtree(folder)
    os.symlink(target, folder)


@pytest.mark.parametrize("swapped", ["A", "A/sub"])
def test_a_symlinked_submodule_path_is_refused_before_any_fetch(
    config, http_git, skipped_submodule, swapped
):
    repo, url, outside = skipped_submodule
    swap_for_symlink(repo / swapped, outside if swapped == "A" else outside / "sub")
    requests_before = len(http_git.seen)
    git = Git(config, deadline=time.monotonic() + 60)
    policy = checkout.policy(config)

    with pytest.raises(JobFailure) as raised:
        submodules.update(git, str(repo), parse_git_url(url, policy), policy)

    assert raised.value.code == "submodule_refused"
    assert f"'A/sub' is not a real folder: {swapped!r} is a symlink" in raised.value.message
    assert http_git.seen[requests_before:] == []  # nothing was fetched, not even refs
    assert not (repo / ".git" / "modules").exists()
    assert "submodule.A/sub.url" not in (repo / ".git" / "config").read_text()
    assert os.listdir(outside / "sub") == []


def test_the_same_checkout_with_real_folders_fetches_its_submodule(
    config, http_git, skipped_submodule
):
    # The control: the guard, not anything else about the layout, is what refused above.
    repo, url, _ = skipped_submodule
    git = Git(config, deadline=time.monotonic() + 60)
    policy = checkout.policy(config)

    fetched = submodules.update(git, str(repo), parse_git_url(url, policy), policy)

    assert fetched == 1
    assert (repo / "A" / "sub" / "leaf.txt").read_text() == "leaf\n"
    assert any("leaf.git" in path for _, path, _ in http_git.seen)
