"""The workspace summary's `lfs` and `submodules` entries (`agent.workspace.SUMMARIES`): what
a checkout holds of its LFS files and submodules, present only where it has any."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agent import lfs, submodules
from agent.workspace import SUMMARIES
from tests.agent.test_submodules import add_submodule
from tests.support.gitservers import Upstream
from tests.support.jobs import run_job
from tests.support.lfsserver import commit_lfs_files, start_lfs_server

WEIGHTS = os.urandom(50_000)
VOCAB = b"\x00vocab\xff" * 100


@pytest.fixture
def lfs_upstream(served, tmp_path):
    server = start_lfs_server(tmp_path / "lfs-storage")
    upstream = Upstream(served, "model")
    upstream.commit({"README.md": "a model\n"}, "first")
    commit_lfs_files(upstream, server.endpoint(), {"weights.bin": WEIGHTS, "vocab.dat": VOCAB})
    yield upstream
    server.stop()


@pytest.fixture
def with_submodule(served):
    leaf = Upstream(served, "leaf")
    leaf_commit = leaf.commit({"leaf.txt": "leaf\n"}, "leaf")
    top = Upstream(served, "top")
    top.commit({"top.txt": "top\n"}, "top")
    add_submodule(top, "libs/leaf", "../leaf.git", leaf_commit)
    top.commit({}, "with leaf")
    return top, leaf_commit


def test_lfs_and_submodules_are_the_registered_summaries():
    assert dict(SUMMARIES) == {"lfs": lfs.summary, "submodules": submodules.summary}


def test_a_plain_checkout_has_neither_summary(config, upstream, git_daemon):
    result = run_job(config, git_url=git_daemon.url(upstream.name))

    assert "lfs" not in result.workspace
    assert "submodules" not in result.workspace


def test_an_lfs_checkout_counts_its_lfs_files_and_no_pointer_left(config, lfs_upstream, git_daemon):
    result = run_job(config, git_url=git_daemon.url(lfs_upstream.name), lfs=True)

    assert result.workspace["lfs"] == {"files": 2, "pointers_left": 0, "paths_left": []}


def test_a_checkout_without_lfs_says_which_pointers_are_left(config, lfs_upstream, git_daemon):
    result = run_job(config, git_url=git_daemon.url(lfs_upstream.name), lfs=False)

    assert result.workspace["lfs"] == {
        "files": 2,
        "pointers_left": 2,
        "paths_left": ["vocab.dat", "weights.bin"],
    }


def test_recursive_submodules_are_initialised_at_their_recorded_commit(
    config, git_daemon, with_submodule
):
    top, leaf_commit = with_submodule

    result = run_job(config, git_url=git_daemon.url(top.name), submodules="recursive")

    assert result.workspace["submodules"] == {
        "count": 1,
        "initialised": 1,
        "modules": [{"path": "libs/leaf", "commit": leaf_commit, "checked_out": leaf_commit}],
    }


def test_skipped_submodules_are_counted_and_not_initialised(config, git_daemon, with_submodule):
    top, leaf_commit = with_submodule

    result = run_job(config, git_url=git_daemon.url(top.name))

    assert result.workspace["submodules"] == {
        "count": 1,
        "initialised": 0,
        "modules": [{"path": "libs/leaf", "commit": leaf_commit, "checked_out": None}],
    }


def test_an_inspect_sees_a_submodule_that_was_removed_by_hand(config, git_daemon, with_submodule):
    top, _ = with_submodule
    url = git_daemon.url(top.name)
    checkout = Path(run_job(config, git_url=url, submodules="recursive").local_path)
    shutil.rmtree(checkout / "libs" / "leaf")
    (checkout / "libs" / "leaf").mkdir()

    inspected = run_job(config, kind="inspect", git_url=url)

    assert inspected.workspace["submodules"]["initialised"] == 0
    assert inspected.workspace["submodules"]["modules"][0]["checked_out"] is None
