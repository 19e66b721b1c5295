"""The agent's child processes: the git commands it starts, and the orphans it adopts.

The agent makes itself a child subreaper (Linux), so git's remote helpers (`git-remote-https`,
ssh) that outlive their git become its children. Each git command's process group is reaped when
the command ends; `reap_adopted` reaps what is left. It never reaps a process that a
`subprocess.Popen` started here still owns: the reaper and `start` share one lock, so a pid is
known as owned from the moment it exists until its `Popen` has waited for it. Reaping such a pid
behind Popen's back would turn its exit status into a made-up 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from types import FrameType
from typing import Any

KILL_GRACE_SECONDS = 2.0

_PR_SET_CHILD_SUBREAPER = 36
_lock = threading.Lock()
_owned: set[int] = set()
_child_exited = threading.Event()
_subreaper: bool | None = None


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux), so that git's helpers are reaped by the agent.

    Without it a helper whose parent died becomes a zombie of PID 1, and in a container where
    the agent itself is PID 1, or where PID 1 does not reap, zombies pile up.
    """
    global _subreaper
    with _lock:
        if _subreaper is None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
            except (OSError, AttributeError):
                _subreaper = False
        return _subreaper


def start(command: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start `command` as a child the reaper leaves to its Popen; call `forget` once waited for."""
    with _lock:
        process: subprocess.Popen[bytes] = subprocess.Popen(command, **options)
        _owned.add(process.pid)
    return process


def forget(process: subprocess.Popen[bytes]) -> None:
    """Hand `process`'s pid over to the reaper; its Popen must have waited for it already."""
    with _lock:
        _owned.discard(process.pid)


def note_child_exited(signum: int, frame: FrameType | None) -> None:
    """SIGCHLD handler: only notes that a child exited; `reap_adopted` does the waiting."""
    _child_exited.set()


def install_sigchld_handler() -> None:
    """Make SIGCHLD wake the reaper (main thread only, as for every signal handler)."""
    signal.signal(signal.SIGCHLD, note_child_exited)


def child_exited() -> bool:
    """Whether a SIGCHLD came since the last `reap_adopted`."""
    return _child_exited.is_set()


def reap_adopted() -> int:
    """Reap every exited child that no Popen of this process owns; returns how many.

    It peeks with WNOWAIT first, so an exited owned child is left as it is (its Popen reaps it
    within moments); the next round goes on from there.
    """
    _child_exited.clear()
    reaped = 0
    with _lock:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return reaped
            if info is None or info.si_pid in _owned:
                return reaped
            with contextlib.suppress(ChildProcessError):
                os.waitpid(info.si_pid, os.WNOHANG)
            reaped += 1


def signal_group(pgid: int, signum: int) -> None:
    """Send `signum` to process group `pgid`, if any member is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def kill_process_group(process: subprocess.Popen[bytes], grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM the whole group, give it `grace` seconds, then SIGKILL whatever is left."""
    signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    # Children of git (remote helpers, ssh) may outlive it; the group outlives its leader.
    signal_group(process.pid, signal.SIGKILL)
    process.wait()


def reap_process_group(pgid: int, timeout: float = KILL_GRACE_SECONDS) -> bool:
    """Wait until no process of group `pgid` exists, reaping the ones adopted by this process.

    Returns False if some member is still there after `timeout` (e.g. a zombie of another parent).
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-pgid, os.WNOHANG)[0] > 0:
                pass
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def end_process_group(process: subprocess.Popen[bytes]) -> bool:
    """After git exited: SIGKILL what is left of its group and reap it; True when none is left.

    A git that dies of an error does not wait for its remote helper, which then lingers as a
    zombie (or still running) child of the agent.
    """
    signal_group(process.pid, signal.SIGKILL)
    return reap_process_group(process.pid)
