"""The agent's reaper: it reaps the orphans it adopts and never a child a Popen still owns."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from agent import children


@pytest.fixture(autouse=True)
def subreaper() -> None:
    if not children.become_subreaper():
        pytest.skip("PR_SET_CHILD_SUBREAPER is Linux only")


def state_of(pid: int) -> str | None:
    """The process state letter of `pid` (`Z` for a zombie), or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return text[text.rindex(")") + 2]


def wait_for_state(pid: int, wanted: str | None, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while state_of(pid) != wanted:
        assert time.monotonic() < deadline, f"{pid} stayed {state_of(pid)!r}"
        time.sleep(0.01)


def orphan() -> int:
    """A process whose parent exited at once, so that this (subreaper) process adopts it."""
    parent = children.start(
        ["sh", "-c", "sleep 0.2 & echo $!"], stdout=subprocess.PIPE, start_new_session=True
    )
    out, _ = parent.communicate()
    children.forget(parent)
    pid = int(out)
    assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid()
    return pid


def test_an_adopted_orphan_that_exits_is_reaped():
    pid = orphan()
    wait_for_state(pid, "Z")

    assert children.reap_adopted() >= 1

    assert state_of(pid) is None


def test_an_exited_child_that_a_popen_owns_keeps_its_exit_status():
    owned = children.start(["sh", "-c", "exit 7"])
    wait_for_state(owned.pid, "Z")
    adopted = orphan()
    wait_for_state(adopted, "Z")

    children.reap_adopted()

    assert state_of(owned.pid) == "Z"  # left to its Popen
    assert owned.wait(timeout=5) == 7
    children.forget(owned)
    children.reap_adopted()
    assert state_of(adopted) is None


def test_sigchld_only_notes_that_a_child_exited():
    previous = signal.getsignal(signal.SIGCHLD)
    children.install_sigchld_handler()
    try:
        children.reap_adopted()
        assert not children.child_exited()
        pid = orphan()
        wait_for_state(pid, "Z")
        deadline = time.monotonic() + 5
        while not children.child_exited():
            assert time.monotonic() < deadline, "no SIGCHLD was noted"
            time.sleep(0.01)
        assert state_of(pid) == "Z"  # the handler waits for nothing itself
        children.reap_adopted()
        assert not children.child_exited()
        assert state_of(pid) is None
    finally:
        signal.signal(signal.SIGCHLD, previous)
