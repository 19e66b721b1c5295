"""Submodules: `recursive` fetches them (nested two deep) from URLs that pass the policy, checked
before anything is fetched; `none` skips and counts them; hostile .gitmodules refuse the job."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.errors import JobFailure
from tests.support.gitservers import Upstream, git
from tests.support.jobs import run_job


def add_submodule(parent: Upstream, path: str, url: str, commit: str, name: str | None = None):
    """Record a submodule in `parent`'s next commit without fetching anything."""
    name = name or path
    modules = parent.work / ".gitmodules"
    before = modules.read_text() if modules.exists() else ""
    modules.write_text(before + f'[submodule "{name}"]\n\tpath = {path}\n\turl = {url}\n')
    git("update-index", "--add", "--cacheinfo", f"160000,{commit},{path}", cwd=parent.work)
    git("add", ".gitmodules", cwd=parent.work)
    # An empty folder is an uninitialised submodule to `git add --all`, not a deletion.
    (parent.work / path).mkdir(parents=True, exist_ok=True)


@pytest.fixture
def nested(served):
    """top -> ../middle.git (relative) -> git://.../leaf.git (absolute)."""
    leaf = Upstream(served, "leaf")
    leaf_commit = leaf.commit({"leaf.txt": "leaf\n"}, "leaf")
    middle = Upstream(served, "middle")
    middle.commit({"middle.txt": "middle\n"}, "middle")
    return leaf, leaf_commit, middle


def test_recursive_fetches_submodules_nested_two_deep(config, served, git_daemon, nested):
    leaf, leaf_commit, middle = nested
    add_submodule(middle, "libs/leaf", git_daemon.url(leaf.name), leaf_commit)
    middle_commit = middle.commit({}, "with leaf")
    top = Upstream(served, "top")
    top.commit({"top.txt": "top\n"}, "top")
    add_submodule(top, "vendor/middle", "../middle.git", middle_commit)
    top.commit({}, "with middle")

    result = run_job(config, git_url=git_daemon.url(top.name), submodules="recursive")

    checkout = Path(result.local_path)
    assert (checkout / "vendor" / "middle" / "middle.txt").read_text() == "middle\n"
    assert (checkout / "vendor" / "middle" / "libs" / "leaf" / "leaf.txt").read_text() == "leaf\n"
    assert result.submodules == 2

    pulled = run_job(config, kind="pull", git_url=git_daemon.url(top.name), submodules="recursive")
    assert pulled.commit == result.commit


def test_none_skips_submodules_and_counts_them(config, served, git_daemon, nested):
    _leaf, leaf_commit, _ = nested
    top = Upstream(served, "top")
    top.commit({"top.txt": "top\n"}, "top")
    add_submodule(top, "leaf", "../leaf.git", leaf_commit)
    top.commit({}, "with leaf")

    result = run_job(config, git_url=git_daemon.url(top.name))

    assert result.submodules_skipped == 1
    assert os.listdir(Path(result.local_path) / "leaf") == []


HOSTILE_URLS = [
    ("ext::sh-c-touch%/tmp/gitfleet-pwned", "Remote helpers"),
    ("file:///etc", "not allowed"),
    ("/srv/git/leaf.git", "Local paths"),
    ("-uupload-pack=touch%/tmp/gitfleet-pwned", "may not start with '-'"),
    ("../../../../../../leaf.git", "leaves the server's root"),
    ("http://169.254.169.254/leaf.git", "Link-local"),
]


@pytest.mark.parametrize(("url", "reason"), HOSTILE_URLS)
def test_a_hostile_submodule_url_refuses_the_job_before_any_fetch(
    config, served, git_daemon, nested, url, reason
):
    _, leaf_commit, _ = nested
    top = Upstream(served, "top")
    top.commit({"top.txt": "top\n"}, "top")
    add_submodule(top, "good", "../leaf.git", leaf_commit)
    add_submodule(top, "bad", url, leaf_commit)
    top.commit({}, "hostile")

    with pytest.raises(JobFailure) as raised:
        run_job(config, git_url=git_daemon.url(top.name), submodules="recursive")

    assert raised.value.code == "submodule_refused"
    assert reason in raised.value.message
    assert not Path("/tmp/gitfleet-pwned").exists()
    assert not (Path(config.projects_path) / "42_my-project").exists()


@pytest.mark.parametrize(
    ("name", "path"), [("../../evil", "evil"), ("ok", "../outside"), ("ok", ".git/x")]
)
def test_submodule_names_and_paths_that_leave_the_worktree_are_refused(
    config, served, git_daemon, nested, name, path
):
    _, leaf_commit, _ = nested
    top = Upstream(served, "top")
    top.commit({"top.txt": "top\n"}, "top")
    modules = f'[submodule "{name}"]\n\tpath = {path}\n\turl = ../leaf.git\n'
    (top.work / ".gitmodules").write_text(modules)
    git("add", ".gitmodules", cwd=top.work)
    # git itself refuses such gitlinks in a tree it writes; the gitlink sits at a plain path.
    git("update-index", "--add", "--cacheinfo", f"160000,{leaf_commit},sub", cwd=top.work)
    (top.work / "sub").mkdir()
    top.commit({}, "hostile")

    with pytest.raises(JobFailure) as raised:
        run_job(config, git_url=git_daemon.url(top.name), submodules="recursive")

    assert raised.value.code == "submodule_refused"


def test_the_symlinked_submodule_layout_of_cve_2024_32002_runs_nothing(
    config, served, git_daemon, tmp_path
):
    # A symlink `a` -> .git beside a submodule at `A/modules/x`: on a case-insensitive file
    # system git would write the submodule's repository, hooks included, through the symlink.
    markers = tmp_path / "markers"
    markers.mkdir()
    leaf = Upstream(served, "leaf")
    hook = f"#!/bin/sh\ntouch '{markers}/post-checkout'\n"
    leaf_commit = leaf.commit({"y/hooks/post-checkout": hook}, "payload")
    top = Upstream(served, "top")
    top.commit({"top.txt": "top\n"}, "top")
    (top.work / "a").symlink_to(".git")
    git("add", "a", cwd=top.work)
    add_submodule(top, "A/modules/x", "../leaf.git", leaf_commit, name="x")
    top.commit({}, "cve-2024-32002")

    try:
        result = run_job(config, git_url=git_daemon.url(top.name), submodules="recursive")
    except JobFailure as failure:
        assert failure.code == "submodule_refused"
    else:
        checkout = Path(result.local_path)
        assert os.readlink(checkout / "a") == ".git"
        assert not (checkout / ".git" / "hooks").exists()
    assert os.listdir(markers) == []
