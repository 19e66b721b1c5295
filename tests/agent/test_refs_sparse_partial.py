"""Tags, commits, moving between them with pull; partial clones and cone-mode sparse checkouts
that keep working across pulls."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import JobFailure
from tests.support.gitservers import git
from tests.support.jobs import run_job


@pytest.fixture
def tagged(upstream):
    first = upstream.head()
    git("tag", "v1.0", first, cwd=upstream.work)
    git("push", "--quiet", "origin", "refs/tags/v1.0", cwd=upstream.work)
    second = upstream.commit({"README.md": "second\n", "src/app.py": "x = 1\n"}, "second")
    return first, second


def test_clone_of_a_tag_checks_out_its_commit(config, upstream, git_daemon, tagged):
    first, _ = tagged

    result = run_job(config, git_url=git_daemon.url(upstream.name), branch="v1.0")

    assert (result.commit, result.ref, result.ref_kind, result.branch) == (
        first, "v1.0", "tag", ""
    )  # fmt: skip
    assert (Path(result.local_path) / "README.md").read_text() == "hello\n"


def test_clone_of_a_commit_checks_it_out(config, upstream, git_daemon, tagged):
    first, _ = tagged

    result = run_job(config, git_url=git_daemon.url(upstream.name), branch=first)

    assert (result.commit, result.ref_kind) == (first, "commit")
    assert not (Path(result.local_path) / "src").exists()


def test_a_commit_that_is_not_there_fails_with_ref_not_found(config, upstream, git_daemon):
    with pytest.raises(JobFailure) as raised:
        run_job(config, git_url=git_daemon.url(upstream.name), branch="0" * 40)

    assert raised.value.code == "ref_not_found"


def test_pull_moves_between_branch_tag_and_commit(config, upstream, git_daemon, tagged):
    first, second = tagged
    url = git_daemon.url(upstream.name)
    checkout = Path(run_job(config, git_url=url).local_path)

    on_tag = run_job(config, kind="pull", git_url=url, branch="main", ref="v1.0")
    assert (on_tag.commit, on_tag.ref_kind) == (first, "tag")
    assert (checkout / "README.md").read_text() == "hello\n"

    again = run_job(config, kind="pull", git_url=url, branch="v1.0")
    assert again.commit == first

    on_commit = run_job(config, kind="pull", git_url=url, branch="v1.0", ref=second)
    assert (on_commit.commit, on_commit.ref_kind) == (second, "commit")

    feature = upstream.commit({"f.txt": "f\n"}, "feature", branch="feature")
    on_branch = run_job(config, kind="pull", git_url=url, branch=second, ref="feature")
    assert (on_branch.commit, on_branch.ref_kind, on_branch.branch) == (
        feature, "branch", "feature"
    )  # fmt: skip
    newer = upstream.commit({"g.txt": "g\n"}, "more", branch="feature")
    assert run_job(config, kind="pull", git_url=url, branch="feature").commit == newer
    assert git("status", "--porcelain", cwd=checkout) == ""


@pytest.fixture
def layered(upstream):
    upstream.set_config("uploadpack.allowFilter", "true")
    upstream.set_config("uploadpack.allowAnySHA1InWant", "true")
    return upstream.commit(
        {
            "models/a.txt": "a\n",
            "models/other/x.txt": "x\n",
            "models/deep/b.txt": "b\n",
            "docs/c.txt": "c\n",
            "top.txt": "t\n",
        },
        "layers",
    )


def test_sparse_checkout_holds_only_the_folders_asked_for(config, upstream, git_daemon, layered):
    url = git_daemon.url(upstream.name)

    result = run_job(config, git_url=url, sparse=["models/deep"], filter="blob:none")

    checkout = Path(result.local_path)
    assert (checkout / "models" / "deep" / "b.txt").read_text() == "b\n"
    # Cone mode keeps the files directly in the folders above (git's own rule).
    assert (checkout / "top.txt").exists() and (checkout / "models" / "a.txt").exists()
    assert not (checkout / "docs").exists()
    assert not (checkout / "models" / "other").exists()
    assert git("config", "remote.origin.partialclonefilter", cwd=checkout).strip() == "blob:none"

    new = upstream.commit({"models/deep/b.txt": "b2\n", "docs/c.txt": "c2\n"}, "update")
    pulled = run_job(config, kind="pull", git_url=url, sparse=["models/deep"], filter="blob:none")

    assert pulled.commit == new
    assert (checkout / "models" / "deep" / "b.txt").read_text() == "b2\n"
    assert not (checkout / "docs").exists()
    assert git("status", "--porcelain", cwd=checkout) == ""


@pytest.mark.parametrize("spec", ["blob:none", "tree:0", "blob:limit=1k"])
def test_partial_clone_filters_are_recorded_and_pulls_work(
    config, upstream, git_daemon, layered, spec
):
    url = git_daemon.url(upstream.name)
    checkout = Path(run_job(config, git_url=url, filter=spec).local_path)
    assert git("config", "remote.origin.promisor", cwd=checkout).strip() == "true"
    new = upstream.commit({"docs/c.txt": "c3\n"}, "update")

    assert run_job(config, kind="pull", git_url=url, filter=spec).commit == new
    assert (checkout / "docs" / "c.txt").read_text() == "c3\n"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("submodule.x.update", "!touch /tmp/gitfleet-pwned"),
        ("filter.lfs.smudge", "touch /tmp/gitfleet-pwned"),
        ("lfs.url", "http://169.254.169.254/"),
        ("core.worktree", "/etc"),
        ("remote.origin.uploadpack", "touch /tmp/gitfleet-pwned"),
    ],
)
def test_pull_accepts_what_the_agent_wrote_and_nothing_else(
    config, upstream, git_daemon, layered, key, value
):
    url = git_daemon.url(upstream.name)
    checkout = Path(run_job(config, git_url=url, sparse=["models"], filter="blob:none").local_path)
    assert run_job(config, kind="pull", git_url=url, sparse=["models"], filter="blob:none")
    git("config", key, value, cwd=checkout)

    with pytest.raises(JobFailure) as raised:
        run_job(config, kind="pull", git_url=url, sparse=["models"], filter="blob:none")

    assert raised.value.code == "unsafe_path"
    assert key in raised.value.message.lower()
    assert not Path("/tmp/gitfleet-pwned").exists()
