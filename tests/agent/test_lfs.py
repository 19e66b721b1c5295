"""Git LFS: the agent downloads every LFS object of the checked-out commit from a real LFS
server (giftless on 127.0.0.1), byte for byte, under the URL policy; a pointer left behind fails
the job (`lfs_incomplete`), never `ready`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from agent.errors import JobFailure
from agent.git import JobControl
from tests.support.gitservers import Upstream, git
from tests.support.jobs import run_job
from tests.support.lfsserver import commit_lfs_files

WEIGHTS = os.urandom(300_000)
TOKENIZER = b"\x00binary tokenizer\xff" * 1000


@pytest.fixture
def lfs_upstream(served, lfs_server) -> Upstream:
    upstream = Upstream(served, "model")
    upstream.commit({"README.md": "a model\n"}, "first")
    commit_lfs_files(
        upstream,
        lfs_server.endpoint(),
        {"weights/model.bin": WEIGHTS, "tokenizer.dat": TOKENIZER},
        plain={"config.json": "{}\n"},
    )
    return upstream


def test_clone_with_lfs_downloads_every_object_byte_for_byte(config, lfs_upstream, git_daemon):
    result = run_job(config, git_url=git_daemon.url(lfs_upstream.name), lfs=True)

    checkout = Path(result.local_path)
    assert (checkout / "weights" / "model.bin").read_bytes() == WEIGHTS
    assert (checkout / "tokenizer.dat").read_bytes() == TOKENIZER
    assert (checkout / "config.json").read_text() == "{}\n"
    assert result.lfs_files == 2
    # The checkout is clean for git with the agent's filter settings, so pulls keep working.
    assert git("-c", "filter.lfs.clean=git-lfs clean -- %f", "status", "--porcelain",
               cwd=checkout) == ""  # fmt: skip


def test_pull_with_lfs_downloads_the_new_objects(config, lfs_upstream, lfs_server, git_daemon):
    url = git_daemon.url(lfs_upstream.name)
    checkout = Path(run_job(config, git_url=url, lfs=True).local_path)
    new_weights = os.urandom(100_000)
    new = commit_lfs_files(lfs_upstream, lfs_server.endpoint(), {"weights/model.bin": new_weights})

    pulled = run_job(config, kind="pull", git_url=url, lfs=True)

    assert pulled.commit == new
    assert (checkout / "weights" / "model.bin").read_bytes() == new_weights
    assert (checkout / "tokenizer.dat").read_bytes() == TOKENIZER


def test_clone_without_lfs_leaves_pointers(config, lfs_upstream, git_daemon):
    result = run_job(config, git_url=git_daemon.url(lfs_upstream.name), lfs=False)

    pointer = (Path(result.local_path) / "tokenizer.dat").read_bytes()
    assert pointer.startswith(b"version https://git-lfs.github.com/spec/v1\n")
    assert hashlib.sha256(TOKENIZER).hexdigest().encode() in pointer
    assert result.lfs_files == 0


def test_an_object_missing_on_the_server_fails_with_lfs_incomplete(
    config, lfs_upstream, lfs_server, git_daemon
):
    for stored in lfs_server.stored():
        if stored.stat().st_size == len(TOKENIZER):
            stored.unlink()

    with pytest.raises(JobFailure) as raised:
        run_job(config, git_url=git_daemon.url(lfs_upstream.name), lfs=True)

    assert raised.value.code == "lfs_incomplete"
    assert "tokenizer.dat" in raised.value.message
    assert not (Path(config.projects_path) / "42_my-project").exists()


def test_an_lfs_endpoint_on_a_private_host_is_refused(make_config, lfs_upstream, git_daemon):
    # The clone URL itself is allowed here only as a loopback test server would be; the LFS
    # endpoint .lfsconfig names (127.0.0.1) falls under the node's address rules like any URL.
    config = make_config(AGENT_GIT_ALLOW_PRIVATE_HOSTS="false", AGENT_GIT_ALLOWED_SCHEMES="file")
    with pytest.raises(JobFailure) as raised:
        run_job(config, git_url=f"file://{lfs_upstream.bare}", lfs=True)

    assert raised.value.code == "lfs_url_refused"
    assert "127.0.0.1" in raised.value.message


def test_lfs_downloads_report_progress(config, lfs_upstream, git_daemon):
    control = JobControl()

    run_job(config, control, git_url=git_daemon.url(lfs_upstream.name), lfs=True)

    progress = control.progress()
    assert progress["phase"] == "lfs"
    assert progress["percent"] == 100
    assert progress["bytes"] == len(WEIGHTS) + len(TOKENIZER)


@pytest.mark.parametrize("sparse", [[], ["weights"]])
def test_a_fresh_clone_s_summary_is_what_looking_at_it_again_finds(
    config, lfs_upstream, git_daemon, sparse
):
    # A clone's summary takes its checkout as clean without running `git status` (the agent
    # has just made it); an inspect job, which runs it, must find the same.
    url = git_daemon.url(lfs_upstream.name)
    cloned = run_job(config, git_url=url, lfs=True, sparse=sparse)

    inspected = run_job(config, kind="inspect", git_url=url, lfs=True, sparse=sparse)

    assert cloned.workspace == inspected.workspace
    assert cloned.workspace["dirty"] == {"count": 0, "paths": []}
    assert cloned.workspace["lfs"]["pointers_left"] == 0
