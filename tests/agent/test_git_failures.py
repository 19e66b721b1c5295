"""Git that fails: each failure gets its protocol code, leaves no process and no partial folder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import JobCancelled, JobFailure
from agent.git import JobControl
from tests.support.gitservers import free_port, git_processes_mentioning
from tests.support.jobs import mount_tmpfs, run_job, unmount


def assert_clean(config) -> None:
    assert os.listdir(config.projects_path) == []


def failure_of(config, **overrides) -> JobFailure:
    with pytest.raises(JobFailure) as raised:
        run_job(config, **overrides)
    return raised.value


def test_a_missing_branch_is_branch_not_found(config, upstream, git_daemon):
    failure = failure_of(config, git_url=git_daemon.url(upstream.name), branch="nope")

    assert (failure.code, failure.retryable) == ("branch_not_found", False)
    assert "nope" in failure.message
    assert ".tmp-" not in failure.message
    assert_clean(config)


def test_a_missing_repository_is_repository_not_found(config, git_daemon, http_git):
    over_git = failure_of(config, git_url=git_daemon.url("nope.git"))
    over_http = failure_of(config, git_url=http_git.url("git", "nope.git"))

    assert over_git.code == over_http.code == "repository_not_found"
    assert_clean(config)


def test_a_closed_port_is_a_retryable_network_error(config):
    failure = failure_of(config, git_url=f"git://127.0.0.1:{free_port()}/repo.git")

    assert (failure.code, failure.retryable) == ("network_error", True)
    assert_clean(config)


def test_a_password_prompt_is_auth_failed_not_a_hang(config, http_git):
    started = time.monotonic()

    failure = failure_of(config, git_url=http_git.url("auth", "repo.git"))

    assert failure.code == "auth_failed"
    assert time.monotonic() - started < 10
    assert_clean(config)


def test_redirects_are_not_followed(config, upstream, http_git):
    assert run_job(config, git_url=http_git.url("git", upstream.name), target_path="1_direct")

    failure = failure_of(config, git_url=http_git.url("redirect", upstream.name))

    assert failure.code == "git_error"
    assert "301" in failure.message
    assert os.listdir(config.projects_path) == ["1_direct"]


class GroupWatcher:
    """Records the process groups of git processes whose command line mentions `token`."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.groups: dict[int, set[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            for pid in git_processes_mentioning(self.token):
                with contextlib.suppress(ProcessLookupError):
                    self.groups.setdefault(os.getpgid(pid), set()).add(pid)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def assert_group_gone(pgid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_a_server_that_never_answers_times_out_and_the_whole_group_dies(config, silent_server):
    token = uuid.uuid4().hex
    url = f"http://127.0.0.1:{silent_server.port}/{token}/repo.git"
    watcher = GroupWatcher(token)
    started = time.monotonic()

    failure = failure_of(config, git_url=url, timeout_seconds=2)

    watcher.stop()
    assert (failure.code, failure.retryable) == ("timeout", True)
    assert 2 <= time.monotonic() - started < 10
    assert git_processes_mentioning(token) == []
    [(pgid, pids)] = watcher.groups.items()
    assert len(pids) >= 2  # git clone and its git-remote-http child, one group
    assert pgid not in (os.getpgid(0), os.getpid())
    assert_group_gone(pgid)
    assert_clean(config)


def test_a_git_protocol_server_that_never_answers_times_out(config, silent_server):
    failure = failure_of(
        config, git_url=f"git://127.0.0.1:{silent_server.port}/x.git", timeout_seconds=1
    )

    assert failure.code == "timeout"
    assert_clean(config)


def test_progress_lines_with_huge_numbers_fail_the_clone_fast_not_at_the_timeout(
    config, upstream, http_git
):
    # The server sends ~2 MB of "Counting objects: 100% (<5000 digits>/1)": a stderr reader
    # that died on the first one would leave git blocked on a full pipe until the timeout.
    control = JobControl()
    started = time.monotonic()

    with pytest.raises(JobFailure) as raised:
        run_job(
            config, control, git_url=http_git.url("progress-bomb", upstream.name),
            timeout_seconds=30,
        )  # fmt: skip

    elapsed = time.monotonic() - started
    assert raised.value.code != "timeout"
    assert "protocol error" in raised.value.message
    assert elapsed < 10
    assert control.progress() == {}
    assert len(raised.value.message) <= 2000
    assert_clean(config)


def test_cancelling_a_job_kills_git_at_once_and_removes_the_partial_clone(config, silent_server):
    token = uuid.uuid4().hex
    control = JobControl()
    watcher = GroupWatcher(token)
    threading.Timer(1.0, control.cancel, args=("lease_lost",)).start()
    started = time.monotonic()

    with pytest.raises(JobCancelled):
        run_job(
            config, control, git_url=f"http://127.0.0.1:{silent_server.port}/{token}/r.git",
            timeout_seconds=60,
        )  # fmt: skip

    watcher.stop()
    assert time.monotonic() - started < 5
    assert git_processes_mentioning(token) == []
    assert watcher.groups
    for pgid in watcher.groups:
        assert_group_gone(pgid)
    assert_clean(config)


def as_unprivileged_user(action: Callable[[], dict]) -> dict:
    """Run `action` in a forked child as `nobody` (root ignores file modes) and return its dict."""
    if os.geteuid() != 0:
        return action()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.environ["HOME"] = "/nonexistent"
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, json.dumps(action()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        output = reader.read()
    os.waitpid(pid, 0)
    return json.loads(output)


def test_a_read_only_projects_root_is_permission_denied_with_nothing_written(
    make_config, upstream, git_daemon
):
    storage = Path(tempfile.mkdtemp(prefix="gitfleet-ro-"))  # outside root's private tmp_path
    try:
        storage.chmod(0o755)
        config = make_config(AGENT_STORAGE_PATH=str(storage))
        projects = Path(config.projects_path)
        projects.chmod(0o555)

        def clone() -> dict:
            try:
                return run_job(config, git_url=git_daemon.url(upstream.name)).as_dict()
            except JobFailure as failure:
                return failure.as_dict()

        outcome = as_unprivileged_user(clone)

        assert outcome["code"] == "permission_denied"
        assert "Permission denied" in outcome["message"]
        assert os.listdir(projects) == []
    finally:
        (storage / "projects").chmod(0o755)
        shutil.rmtree(storage)


@pytest.fixture
def small_disk_config(make_config, tmp_path):
    """An agent whose storage is a 2 MB tmpfs."""
    storage = tmp_path / "small-disk"
    storage.mkdir()
    mount_tmpfs(storage, "2m")
    yield make_config(AGENT_STORAGE_PATH=str(storage))
    unmount(storage)


# 8 MB of text: a small pack, so the space runs out while git checks the files out, and git
# then says only "unable to write file" without the reason.
REPETITIVE_TEXT = "the same line over and over\n" * 300_000


def test_a_checkout_that_runs_out_of_space_is_disk_full(
    small_disk_config, make_upstream, git_daemon
):
    upstream = make_upstream("text", files={"text.txt": REPETITIVE_TEXT})

    failure = failure_of(small_disk_config, git_url=git_daemon.url(upstream.name))

    assert (failure.code, failure.retryable) == ("disk_full", False)
    assert "unable to write file" in failure.message
    assert_clean(small_disk_config)
    assert shutil.disk_usage(small_disk_config.projects_path).used < 64 * 1024


def test_a_pull_that_runs_out_of_space_is_disk_full(small_disk_config, upstream, git_daemon):
    url = git_daemon.url(upstream.name)
    run_job(small_disk_config, git_url=url)
    upstream.commit({"text.txt": REPETITIVE_TEXT})

    failure = failure_of(small_disk_config, kind="pull", git_url=url)

    assert (failure.code, failure.retryable) == ("disk_full", False)
