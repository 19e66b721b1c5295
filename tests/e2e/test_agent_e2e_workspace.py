"""Live workspaces for real: uvicorn server, `python -m agent`, git served by `git daemon`.

A person edits a checkout on the node; the status shows it after an inspect; pulls keep or back
up the work as asked; a delete refuses to lose it unless forced; a slow clone shows progress
that moves every few seconds without an event per update.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from tests.support.fleet import Fleet
from tests.support.gitservers import git, start_gated_relay

pytestmark = pytest.mark.e2e


def done(job_id: str):
    """A status predicate: the job `job_id` is no longer the active one."""
    return lambda s: not s["active_job"] or s["active_job"]["id"] != job_id


def test_inspect_pull_strategies_and_safe_delete_through_a_real_agent(
    fleet, make_upstream, git_daemon
):
    upstream = make_upstream("live")
    upstream.commit({"train.py": "lr = 1\n", "README.md": "hi\n"}, "first")
    fleet.start_agent()
    user = fleet.user
    project = user.clone("live", git_daemon.url("live.git"))["project"]
    pid = project["id"]
    user.wait_until(pid, lambda s: s["status"] == "ready", what="clone")
    assert user.status(pid)["workspace"]["dirty"] == {"count": 0, "paths": []}
    checkout = fleet.storage / "projects" / project["target_path"]

    # Edits made on the node, seen by an inspect.
    (checkout / "train.py").write_text("lr = 2\n")
    (checkout / "notes.txt").write_text("mine\n")
    job = user.http.post(f"/api/v1/projects/{pid}/inspect").json()["job"]
    status = user.wait_until(pid, done(job["id"]), what="inspect")
    workspace = status["workspace"]
    assert workspace["dirty"] == {"count": 2, "paths": ["M train.py", "?? notes.txt"]}
    assert (workspace["ahead"], workspace["behind"]) == (0, 0)
    assert workspace["size_bytes"] > 0 and workspace["inspected_at"]

    # ff-only refuses and lists the file; rebase keeps the edit and the untracked file.
    new = upstream.commit({"README.md": "upstream\n"})
    job = user.http.post(f"/api/v1/projects/{pid}/pull").json()["job"]
    status = user.wait_until(pid, done(job["id"]), what="ff-only pull")
    assert status["status"] == "ready"
    assert status["last_error"]["code"] == "dirty_worktree"
    assert "M train.py" in status["last_error"]["message"]
    job = user.http.post(f"/api/v1/projects/{pid}/pull", json={"strategy": "rebase"}).json()
    status = user.wait_until(pid, done(job["job"]["id"]), what="rebase pull")
    assert status["commit"] == new and status["last_error"] is None
    assert (checkout / "train.py").read_text() == "lr = 2\n"
    assert (checkout / "notes.txt").read_text() == "mine\n"
    assert (checkout / "README.md").read_text() == "upstream\n"

    # A delete refuses to lose the work, then a forced one goes ahead.
    job = user.http.delete(f"/api/v1/projects/{pid}").json()["job"]
    status = user.wait_until(pid, done(job["id"]), what="refused delete")
    assert status["status"] == "ready"
    assert status["last_error"]["code"] == "local_changes"
    assert "?? notes.txt" in status["last_error"]["message"]
    assert (checkout / "notes.txt").read_text() == "mine\n"

    # reset backs the work up under a ref the success event names.
    upstream.commit({"README.md": "again\n"})
    job = user.http.post(f"/api/v1/projects/{pid}/pull", json={"strategy": "reset"}).json()
    user.wait_until(pid, done(job["job"]["id"]), what="reset pull")
    succeeded = [e for e in user.events(pid) if e["type"] == "JobSucceeded"]
    backup_ref = succeeded[-1]["data"]["result"]["backup_ref"]
    assert not (checkout / "notes.txt").exists()
    assert git("show", f"{backup_ref}:notes.txt", cwd=checkout) == "mine\n"
    assert git("show", f"{backup_ref}:train.py", cwd=checkout) == "lr = 2\n"

    # The backup is work on no remote-tracking branch: an unforced delete still refuses.
    job = user.http.delete(f"/api/v1/projects/{pid}").json()["job"]
    status = user.wait_until(pid, done(job["id"]), what="refused delete")
    assert (status["status"], status["last_error"]["code"]) == ("ready", "local_changes")

    assert user.http.delete(f"/api/v1/projects/{pid}?force=true").status_code == 202
    user.wait_until(pid, lambda s: s["status"] == "deleted", what="forced delete")
    assert not checkout.exists()
    fleet.site.manage("rebuild_projections", "--check")


@pytest.fixture
def slow_renewing_fleet(tmp_path) -> Iterator[Fleet]:
    """A fleet renewing leases at the production cadence (20 s), unlike the fast test one."""
    fleet = Fleet(tmp_path, LEASE_SECONDS="90", LEASE_RENEW_SECONDS="20")
    yield fleet
    fleet.close()


def test_a_slow_clone_shows_progress_that_moves_without_an_event_per_update(
    slow_renewing_fleet, make_upstream, git_daemon
):
    fleet = slow_renewing_fleet
    make_upstream("slow").commit({"blob.bin": os.urandom(3 * 1024 * 1024)}, "big")
    relay = start_gated_relay(git_daemon.port, rate=200 * 1024)  # ~15 s for the pack
    relay.open()
    try:
        fleet.start_agent()
        project = fleet.user.clone("slow", relay.url("slow.git"))["project"]
        pid = project["id"]
        seen: list[tuple[str, str]] = []
        started = time.monotonic()
        status = fleet.user.status(pid)
        while status["status"] == "pending" and time.monotonic() - started < 120:
            job = status["active_job"] or {}
            if job.get("progress_at"):
                observed = (job["progress_at"], repr(sorted(job["progress"].items())))
                if not seen or seen[-1] != observed:
                    seen.append(observed)
            time.sleep(0.5)
            status = fleet.user.status(pid)
        took = time.monotonic() - started
    finally:
        relay.stop()

    assert status["status"] == "ready", status
    assert took > 10, f"the clone took only {took:.1f} s; the relay should slow it down more"
    assert len(seen) >= 3, seen
    moments = [_seconds(at) for at, _ in seen]
    gaps = [later - earlier for earlier, later in itertools.pairwise(moments)]
    assert max(gaps) < 6, f"progress went quiet for {max(gaps):.1f} s"
    renewals = [e for e in fleet.user.events(pid) if e["type"] == "JobLeaseRenewed"]
    # Events keep the renewal cadence: one renewal in 20 s, whatever the progress posts.
    assert len(renewals) <= took / 20 + 1 < len(seen), (len(renewals), len(seen))
    fleet.site.manage("rebuild_projections", "--check")


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
