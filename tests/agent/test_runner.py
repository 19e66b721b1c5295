"""The agent's loop against the real server: lease, run, renew, report, retry, stop.

The agent runs in this process (so that the test can look at its threads); the server is the
real one, reached through a fault proxy (tests/faultproxy.py) that records what the agent sends
and makes the wire misbehave where a test says so.
How a whole `python -m agent` process drains on SIGTERM is in tests/test_agent_e2e_failures.py.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from agent.client import AgentClient
from agent.config import AgentConfig
from agent.logs import LOGGER_NAME
from agent.runner import EXIT_REFUSED, EXIT_SUPERSEDED, Agent
from tests.support.faultproxy import FaultProxy
from tests.support.gitservers import git_processes_mentioning, start_gated_relay
from tests.support.jobs import config_env

pytestmark = pytest.mark.e2e


class RunningAgent:
    """An `Agent` running its loop in a thread of the test process."""

    def __init__(self, config: AgentConfig) -> None:
        config.create_folders()
        self.config = config
        self.projects = Path(config.projects_path)
        self.agent = Agent(config)
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.exit_code = self.agent.run()

    def stop(self, timeout: float = 20) -> int | None:
        self.agent.stop()
        self.thread.join(timeout)
        return self.exit_code


@pytest.fixture
def proxy(control_plane):
    proxy = FaultProxy(control_plane.url)
    yield proxy
    proxy.stop()


@pytest.fixture
def node(control_plane):
    return control_plane.new_node()


@pytest.fixture
def start_agent(tmp_path, proxy, node):
    started: list[RunningAgent] = []

    def start(**overrides: str) -> RunningAgent:
        settings = {
            "AGENT_SERVER_URL": proxy.url,
            "AGENT_TOKEN": node.token,
            "AGENT_LEASE_WAIT": "1",
            "AGENT_HEARTBEAT_SECONDS": "1",
            "AGENT_DRAIN_SECONDS": "5",
        }
        env = config_env(tmp_path / "data", **{**settings, **overrides})
        running = RunningAgent(AgentConfig.from_env(env))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def wait_until_done(control_plane, project_id: str, timeout: float = 30) -> dict:
    return control_plane.user.wait_until(
        project_id,
        lambda s: s["status"] not in ("pending", "deleting") and not s["active_job"],
        timeout=timeout,
        what="the job to end",
    )


def cancel(control_plane, accepted: dict) -> None:
    project_id, job_id = accepted["project"]["id"], accepted["job"]["id"]
    response = control_plane.user.http.post(f"/api/v1/projects/{project_id}/jobs/{job_id}/cancel")
    assert response.status_code == 202, response.text


def test_a_leased_clone_is_run_and_reported(
    control_plane, proxy, node, start_agent, upstream, git_daemon
):
    accepted = control_plane.clone(node, git_daemon.url(upstream.name))
    project = accepted["project"]
    running = start_agent()

    status = wait_until_done(control_plane, project["id"])

    assert (status["status"], status["commit"]) == ("ready", upstream.head())
    assert status["local_path"] == str(running.projects / project["target_path"])
    assert (running.projects / project["target_path"] / "README.md").read_text() == "hello\n"
    [leased] = control_plane.events_of(project["id"], "JobLeased")
    assert "instance_id" not in leased["data"]  # the owner never reads the agent's instance
    [heartbeat, *_] = proxy.calls_to("heartbeat")
    assert heartbeat.body["instance_id"] == running.agent.instance_id
    assert {call.body["instance_id"] for call in proxy.calls_to("lease")} == {
        running.agent.instance_id
    }
    [report] = proxy.calls_to("complete")
    assert report.body["result"]["size_bytes"] > 0
    assert running.stop() == 0


@pytest.mark.parametrize(
    ("stricter", "reason"),
    [
        ({"AGENT_GIT_ALLOWED_SCHEMES": "git"}, "Scheme 'http' is not allowed"),
        ({"AGENT_GIT_ALLOW_PRIVATE_HOSTS": "false"}, "non-public hosts are not allowed"),
    ],
)
def test_a_job_the_agent_refuses_fails_invalid_job_without_running_git(
    control_plane, node, start_agent, upstream, http_git, stricter, reason
):
    # The server allows http:// and 127.0.0.1; this agent does not: it checks every job again.
    url = http_git.url("git", upstream.name)
    project = control_plane.clone(node, url)["project"]
    running = start_agent(**stricter)

    status = wait_until_done(control_plane, project["id"])

    assert status["status"] == "failed"
    error = status["last_error"]
    assert (error["code"], error["retryable"]) == ("invalid_job", False)
    assert error["message"].startswith("git_url: ")
    assert reason in error["message"]
    assert os.listdir(running.projects) == []


def test_a_lost_lease_answer_is_retried_with_the_same_request_id(
    control_plane, proxy, node, start_agent, upstream, git_daemon
):
    project = control_plane.clone(node, git_daemon.url(upstream.name))["project"]
    proxy.fail("/lease", 503)  # the first poll never reaches the server
    proxy.drop_response("/lease")  # the server grants the lease; its answer is lost
    start_agent()

    status = wait_until_done(control_plane, project["id"])

    assert status["status"] == "ready"
    first, second, third, *_ = proxy.calls_to("lease")
    assert [first.status, second.status, third.status] == [503, None, 200]
    assert [first.forwarded, second.forwarded, third.forwarded] == [False, True, True]
    assert first.body["request_id"] == second.body["request_id"] == third.body["request_id"]
    assert second.answer == third.answer  # the same job and the same lease, handed out once
    assert len(control_plane.events_of(project["id"], "JobLeased")) == 1
    assert control_plane.event_types(project["id"]).count("JobSucceeded") == 1
    assert len(proxy.calls_to("complete")) == 1


def test_completion_is_retried_with_the_same_body_while_the_server_is_unavailable(
    control_plane, proxy, node, start_agent, upstream, git_daemon
):
    project = control_plane.clone(node, git_daemon.url(upstream.name))["project"]
    proxy.fail("/complete", 503, 502)
    start_agent()

    status = wait_until_done(control_plane, project["id"])

    assert (status["status"], status["commit"]) == ("ready", upstream.head())
    attempts = proxy.calls_to("complete")
    assert [call.status for call in attempts] == [503, 502, 200]
    assert attempts[0].body == attempts[1].body == attempts[2].body
    assert control_plane.event_types(project["id"]).count("JobSucceeded") == 1


def test_a_running_job_rides_out_a_server_that_is_down_for_a_while(
    control_plane, proxy, node, start_agent, upstream, git_daemon, caplog
):
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    gate = start_gated_relay(git_daemon.port)  # the clone waits here while the server is away
    try:
        project = control_plane.clone(node, gate.url(upstream.name))["project"]
        start_agent()
        gate.wait_for_connections(1)

        proxy.refuse_connections()
        time.sleep(2.5)  # renewals and heartbeats fail; the lease (6 s) outlives the outage
        proxy.accept_connections()
        gate.open()
        status = wait_until_done(control_plane, project["id"])

        assert (status["status"], status["commit"]) == ("ready", upstream.head())
        failed = {r.getMessage() for r in caplog.records if r.levelno == logging.WARNING}
        assert {"renew_failed", "heartbeat_failed"} <= failed
        assert "JobLeaseExpired" not in control_plane.event_types(project["id"])
        assert [call.status for call in proxy.calls_to("complete")] == [200]
    finally:
        gate.stop()


def test_renewals_ride_out_5xx_a_dropped_answer_and_a_4xx_other_than_409(
    control_plane, proxy, node, start_agent, upstream, git_daemon
):
    gate = start_gated_relay(git_daemon.port)
    try:
        project = control_plane.clone(node, gate.url(upstream.name))["project"]
        proxy.fail("/renew", 503, 400)
        proxy.drop_response("/renew")  # the server renews; the agent never hears of it
        start_agent()
        gate.wait_for_connections(1)
        proxy.wait_for(lambda: [call.status for call in proxy.calls_to("renew")][3:] == [200])

        gate.open()
        status = wait_until_done(control_plane, project["id"])

        assert (status["status"], status["commit"]) == ("ready", upstream.head())
        assert [call.status for call in proxy.calls_to("renew")][:4] == [503, 400, None, 200]
        assert "JobLeaseExpired" not in control_plane.event_types(project["id"])
        assert len(control_plane.events_of(project["id"], "JobLeased")) == 1
    finally:
        gate.stop()


def test_renewals_failing_until_the_lease_expires_stop_the_job_at_its_expiry(
    control_plane, proxy, node, start_agent, upstream, git_daemon, caplog
):
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    gate = start_gated_relay(git_daemon.port)
    try:
        url = gate.url(upstream.name)
        project = control_plane.clone(node, url)["project"]
        proxy.fail_until_cleared("/renew", 503)
        running = start_agent()
        gate.wait_for_connections(1)  # the clone hangs at the gate; its lease (6 s) runs out

        def logged(event: str) -> logging.LogRecord | None:
            return next((r for r in caplog.records if r.getMessage() == event), None)

        proxy.wait_for(lambda: logged("job_lease_expired"), timeout=15)
        [leased] = control_plane.events_of(project["id"], "JobLeased")
        stopped = proxy.wait_for(lambda: logged("job_stopped"))
        started, expired = logged("job_started"), logged("job_lease_expired")

        assert 3 < expired.created - started.created < 7.5
        assert (stopped.fields["attempt"], stopped.fields["reason"]) == (1, "lease_expired")
        renewals = proxy.calls_to("renew")
        assert len(renewals) >= 3 and {call.status for call in renewals} == {503}
        assert proxy.calls_to("complete") == []
        deadline = time.monotonic() + 5
        while git_processes_mentioning(url) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert git_processes_mentioning(url) == []

        proxy.clear()
        gate.open(waiting=False)
        status = wait_until_done(control_plane, project["id"], timeout=40)
        assert (status["status"], status["commit"]) == ("ready", upstream.head())
        assert leased["data"]["attempt"] == 1
        assert [
            e["data"]["attempt"] for e in control_plane.events_of(project["id"], "JobLeased")
        ] == [1, 2]
        assert running.stop() == 0
    finally:
        gate.stop()


def test_a_completion_refused_with_409_is_not_retried(
    control_plane, proxy, node, start_agent, upstream, git_daemon
):
    accepted = control_plane.clone(node, git_daemon.url(upstream.name))
    proxy.fail_until_cleared("/complete", 503)  # the report waits...
    running = start_agent()
    proxy.wait_for(lambda: proxy.calls_to("complete"))

    cancel(control_plane, accepted)  # ...while the user cancels the job: the lease is gone
    proxy.clear()
    proxy.wait_for(lambda: any(call.status == 409 for call in proxy.calls_to("complete")))
    time.sleep(1.5)  # longer than the next retry would have waited
    running.stop()

    *unavailable, refused = proxy.calls_to("complete")
    assert refused.status == 409 and refused.answer["code"] == "lease_lost"
    assert unavailable and {call.status for call in unavailable} == {503}
    status = control_plane.user.status(accepted["project"]["id"])
    assert status["status"] == "failed" and status["last_error"]["code"] == "cancelled"
    assert "JobSucceeded" not in control_plane.event_types(accepted["project"]["id"])


def test_renewals_carry_progress_and_a_lost_lease_kills_git_at_once(
    control_plane, proxy, node, start_agent, make_upstream, git_daemon
):
    upstream = make_upstream("big", files={"blob.bin": os.urandom(2 * 1024 * 1024)})
    slow = start_gated_relay(git_daemon.port, rate=256 * 1024)  # a clone takes seconds
    slow.open()
    try:
        url = slow.url(upstream.name)
        accepted = control_plane.clone(node, url)
        project_id = accepted["project"]["id"]
        running = start_agent()

        def receiving() -> bool:
            renewed = control_plane.events_of(project_id, "JobLeaseRenewed")
            return any(e["data"].get("progress", {}).get("phase") == "receiving" for e in renewed)

        deadline = time.monotonic() + 20
        while not receiving():
            assert time.monotonic() < deadline, "no renewal carried the clone's progress"
            time.sleep(0.2)
        assert git_processes_mentioning(url)

        cancel(control_plane, accepted)

        deadline = time.monotonic() + 10
        while running.agent.running_job_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.agent.running_job_ids() == []
        assert git_processes_mentioning(url) == []
        assert os.listdir(running.projects) == []
        assert proxy.calls_to("complete") == []
        assert running.stop() == 0
    finally:
        slow.stop()


def test_a_job_leased_again_while_running_stops_the_old_run_first(
    control_plane, proxy, node, start_agent, upstream, git_daemon, caplog
):
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    gate = start_gated_relay(git_daemon.port)
    try:
        url = gate.url(upstream.name)
        accepted = control_plane.clone(node, url)
        project = accepted["project"]
        running = start_agent()
        gate.wait_for_connections(1)  # the first run hangs at the gate for good...
        gate.open(waiting=False)  # ...while later runs get through
        proxy.fail_until_cleared("/renew", 503)  # its lease can no longer be renewed: it expires

        status = wait_until_done(control_plane, project["id"], timeout=40)
        proxy.clear()

        assert (status["status"], status["commit"]) == ("ready", upstream.head())
        leased = control_plane.events_of(project["id"], "JobLeased")
        assert [e["data"]["attempt"] for e in leased] == [1, 2]
        assert "JobLeaseExpired" in control_plane.event_types(project["id"])
        granted = [call.answer["lease"]["token"] for call in proxy.calls_to("lease") if call.answer]
        assert len(granted) == 2
        [report] = proxy.calls_to("complete")
        assert (report.body["lease_token"], report.status) == (granted[1], 200)
        assert git_processes_mentioning(url) == []
        assert os.listdir(running.projects) == [project["target_path"]]
        assert running.agent.running_job_ids() == []
        runs = [
            (r.getMessage(), r.fields["attempt"])
            for r in caplog.records
            if r.getMessage() in ("job_started", "job_stopped", "job_finished")
        ]
        assert runs == [
            ("job_started", 1),
            ("job_stopped", 1),
            ("job_started", 2),
            ("job_finished", 2),
        ]
    finally:
        gate.stop()


def test_a_superseded_instance_stops_with_a_non_zero_exit(control_plane, proxy, node, start_agent):
    running = start_agent()
    proxy.wait_for(lambda: proxy.calls_to("lease"))
    # This agent's calls wait at the wire while the other instance starts: one in flight at that
    # moment can make the older instance current again (a race in the server's presence update).
    for verb in ("/heartbeat", "/lease"):
        proxy.fail_until_cleared(verb, 503)
    proxy.wait_idle()

    newer = AgentClient(control_plane.url, node.token)  # the same token starts elsewhere
    newer.heartbeat(
        instance_id=str(uuid.uuid4()), hostname="other", disk_free_bytes=0, running_jobs=[]
    )
    newer.close()
    proxy.clear()
    running.thread.join(20)

    assert running.exit_code == EXIT_SUPERSEDED
    assert any(
        call.answer and call.answer.get("code") == "instance_superseded" for call in proxy.calls
    )


def test_a_refused_token_stops_the_agent_instead_of_retrying_forever(proxy, start_agent):
    running = start_agent(AGENT_TOKEN="gfa_wrong_token")

    running.thread.join(20)

    assert running.exit_code == EXIT_REFUSED
    [refused] = proxy.calls_to("lease")
    assert refused.status == 401


def _heartbeats(proxy) -> list:
    return [call for call in proxy.calls_to("heartbeat") if call.status == 200]


def test_an_idle_agent_lets_its_held_lease_call_stand_for_its_heartbeats(proxy, start_agent):
    # Heartbeats every second, a lease call held 4 s at a time: while a call is held the
    # server already knows the agent is alive, so only the first heartbeat goes out.
    running = start_agent(AGENT_LEASE_WAIT="4")
    proxy.wait_for(lambda: _heartbeats(proxy))
    time.sleep(6)

    held = [call for call in proxy.calls_to("lease") if call.status == 204]
    assert held, "no lease call was held and ended empty"
    assert len(_heartbeats(proxy)) <= 2  # the first, and at most one in a gap between polls
    assert running.stop() == 0


def test_a_held_lease_call_stands_for_heartbeats_only_until_the_refresh_age(proxy, start_agent):
    running = start_agent(AGENT_LEASE_WAIT="10", AGENT_HEARTBEAT_REFRESH_SECONDS="2")
    proxy.wait_for(lambda: _heartbeats(proxy))
    time.sleep(6.5)

    assert (proxy.calls_to("lease"), proxy.in_flight) == ([], 1)  # one call held throughout
    assert 3 <= len(_heartbeats(proxy)) <= 5  # ~ every 2 s (checked once a second)
    assert running.stop() == 0


def test_a_heartbeat_goes_out_while_polling_when_the_running_jobs_change(
    control_plane, proxy, start_agent, node, upstream, git_daemon
):
    gate = start_gated_relay(git_daemon.port)  # the clone waits at the gate until opened
    try:
        accepted = control_plane.clone(node, gate.url(upstream.name))
        job_id = accepted["job"]["id"]
        running = start_agent(AGENT_LEASE_WAIT="10")  # two slots: the second keeps polling
        gate.wait_for_connections(1)

        reported = proxy.wait_for(
            lambda: [c for c in _heartbeats(proxy) if c.body["running_jobs"] == [job_id]],
            timeout=10,
        )
        assert len(reported) == 1
        gate.open()
        wait_until_done(control_plane, accepted["project"]["id"])
        proxy.wait_for(lambda: _heartbeats(proxy)[-1].body["running_jobs"] == [], timeout=10)
        assert running.stop() == 0
    finally:
        gate.stop()
