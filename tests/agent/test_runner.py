"""The agent's loop against a stand-in control plane: lease, run, renew, report, drain, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.runner import EXIT_REFUSED, EXIT_SUPERSEDED, Agent
from tests.agent.conftest import config_env, job_data
from tests.agent.fake_control_plane import TOKEN, FakeControlPlane
from tests.agent.gitservers import git_processes_mentioning

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def plane():
    plane = FakeControlPlane(renew_every_seconds=1)
    yield plane
    plane.stop()


def agent_env(tmp_path: Path, plane: FakeControlPlane, **overrides: str) -> dict[str, str]:
    settings = {
        "AGENT_SERVER_URL": plane.url,
        "AGENT_TOKEN": TOKEN,
        "AGENT_LEASE_WAIT": "1",
        "AGENT_HEARTBEAT_SECONDS": "1",
        "AGENT_DRAIN_SECONDS": "5",
    }
    return config_env(tmp_path / "data", **{**settings, **overrides})


class RunningAgent:
    def __init__(self, config: AgentConfig) -> None:
        config.create_folders()
        self.config = config
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
def start_agent(tmp_path, plane):
    started: list[RunningAgent] = []

    def start(**overrides: str) -> RunningAgent:
        running = RunningAgent(AgentConfig.from_env(agent_env(tmp_path, plane, **overrides)))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def completions(plane: FakeControlPlane, job_id: str) -> list[dict]:
    lease = plane.leases.get(job_id)
    return lease.completions if lease else []


def test_a_leased_clone_is_run_and_reported(plane, start_agent, upstream, git_daemon):
    running = start_agent()
    job_id = plane.enqueue(job_data(git_url=git_daemon.url(upstream.name)))

    [report] = plane.wait_for(lambda: completions(plane, job_id))

    assert report["outcome"] == "succeeded"
    assert report["result"]["commit"] == upstream.head()
    assert report["result"]["local_path"] == os.path.join(
        running.config.projects_path, "42_my-project"
    )
    [heartbeat, *_] = plane.calls_to("heartbeat")
    assert heartbeat.body["instance_id"] == running.agent.instance_id
    assert all(
        call.body["instance_id"] == running.agent.instance_id for call in plane.calls_to("lease")
    )
    assert running.stop() == 0


def test_an_invalid_job_fails_invalid_job_without_running_git(plane, start_agent, tmp_path):
    start_agent()
    job_id = plane.enqueue(job_data(git_url="ext::sh -c 'touch /tmp/pwned'", target_path="1_x"))

    [report] = plane.wait_for(lambda: completions(plane, job_id))

    assert report["outcome"] == "failed"
    assert report["error"]["code"] == "invalid_job"
    assert report["error"]["message"].startswith("git_url: ")
    assert report["error"]["retryable"] is False
    assert os.listdir(tmp_path / "data" / "projects") == []


def test_a_lost_lease_answer_is_retried_with_the_same_request_id(
    plane, start_agent, upstream, git_daemon
):
    plane.fail_next("lease", 503)
    plane.drop_next_lease_response = True
    job_id = plane.enqueue(job_data(git_url=git_daemon.url(upstream.name)))
    start_agent()

    plane.wait_for(lambda: completions(plane, job_id))

    first, second, third, *_ = plane.calls_to("lease")
    assert [first.status, second.status, third.status] == [503, 200, 200]
    assert first.body["request_id"] == second.body["request_id"] == third.body["request_id"]
    assert len(plane.leases) == 1
    assert len(completions(plane, job_id)) == 1


def test_completion_is_retried_with_the_same_body_while_the_server_is_down(
    plane, start_agent, upstream, git_daemon
):
    plane.fail_next("complete", 503, 502)
    job_id = plane.enqueue(job_data(git_url=git_daemon.url(upstream.name)))
    start_agent()

    plane.wait_for(lambda: completions(plane, job_id), timeout=30)

    attempts = plane.calls_to("complete")
    assert [call.status for call in attempts] == [503, 502, 200]
    assert attempts[0].body == attempts[1].body == attempts[2].body


def test_a_completion_refused_with_409_is_not_retried(plane, start_agent, upstream, git_daemon):
    plane.fail_next("complete", 409)
    plane.enqueue(job_data(git_url=git_daemon.url(upstream.name)))
    running = start_agent()

    plane.wait_for(lambda: plane.calls_to("complete"))
    running.stop()

    assert [call.status for call in plane.calls_to("complete")] == [409]


def test_renewals_carry_progress_and_a_lost_lease_kills_git_at_once(
    plane, start_agent, silent_server, tmp_path
):
    token = uuid.uuid4().hex
    url = f"http://127.0.0.1:{silent_server.port}/{token}/repo.git"
    job_id = plane.enqueue(job_data(git_url=url, timeout_seconds=120))
    running = start_agent()
    plane.wait_for(lambda: plane.leases.get(job_id) and plane.leases[job_id].renewals)
    assert git_processes_mentioning(token)

    plane.lose_lease(job_id)

    plane.wait_for(lambda: not running.agent.running_job_ids(), timeout=10)
    assert git_processes_mentioning(token) == []
    assert os.listdir(tmp_path / "data" / "projects") == []
    assert plane.calls_to("complete") == []
    assert running.stop() == 0


def test_a_job_leased_again_while_running_stops_the_old_run_first(
    plane, start_agent, silent_server, upstream, git_daemon, tmp_path
):
    token = uuid.uuid4().hex
    stuck = job_data(git_url=f"http://127.0.0.1:{silent_server.port}/{token}/repo.git")
    job_id = plane.enqueue(stuck)
    start_agent()
    plane.wait_for(lambda: plane.leases.get(job_id) and plane.leases[job_id].renewals)
    old_token = plane.leases[job_id].token

    plane.enqueue({**stuck, "git_url": git_daemon.url(upstream.name)})

    [report] = plane.wait_for(
        lambda: plane.leases[job_id].token != old_token and completions(plane, job_id)
    )
    assert report["outcome"] == "succeeded"
    assert [c.body["lease_token"] for c in plane.calls_to("complete")] == [
        plane.leases[job_id].token
    ]
    assert git_processes_mentioning(token) == []
    assert os.listdir(tmp_path / "data" / "projects") == ["42_my-project"]


def test_a_superseded_instance_stops_with_a_non_zero_exit(plane, start_agent):
    plane.superseded = True
    running = start_agent()

    running.thread.join(20)

    assert running.exit_code == EXIT_SUPERSEDED


def test_a_refused_token_stops_the_agent_instead_of_retrying_forever(plane, start_agent):
    running = start_agent(AGENT_TOKEN="gfa_wrong_token")

    running.thread.join(20)

    assert running.exit_code == EXIT_REFUSED
    assert len(plane.calls_to("lease")) == 1


def start_process(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent"],
        cwd=REPO_ROOT,
        env={"PATH": os.environ["PATH"], **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def json_events(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines()]


def test_sigterm_on_an_idle_agent_exits_0_with_json_logs(plane, tmp_path):
    process = start_process(agent_env(tmp_path, plane, AGENT_LOG_FORMAT="json"))
    plane.wait_for(lambda: plane.calls_to("lease"))

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)

    assert process.returncode == 0
    events = json_events(stderr)
    assert events[0]["event"] == "agent_started"
    assert events[-1]["event"] == "agent_stopped"
    assert {"ts", "level", "event"} <= events[0].keys()
    assert all(
        (tmp_path / "data" / name).is_dir() for name in ("projects", "datasets", "jobs", "outputs")
    )


def test_sigterm_releases_a_job_still_running_after_the_grace_period(
    plane, silent_server, tmp_path
):
    token = uuid.uuid4().hex
    url = f"http://127.0.0.1:{silent_server.port}/{token}/repo.git"
    job_id = plane.enqueue(job_data(git_url=url, timeout_seconds=120))
    process = start_process(
        agent_env(tmp_path, plane, AGENT_LOG_FORMAT="json", AGENT_DRAIN_SECONDS="1")
    )
    plane.wait_for(lambda: plane.leases.get(job_id) and plane.leases[job_id].renewals)

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)

    assert process.returncode == 0
    assert [r["reason"] for r in plane.leases[job_id].releases] == ["agent_shutdown"]
    assert plane.calls_to("complete") == []
    assert git_processes_mentioning(token) == []
    assert os.listdir(tmp_path / "data" / "projects") == []
    events = [e["event"] for e in json_events(stderr)]
    assert (
        events.index("job_started") < events.index("agent_draining") < events.index("job_released")
    )


def test_sigterm_lets_a_job_finish_within_the_grace_period(plane, silent_server, tmp_path):
    url = f"http://127.0.0.1:{silent_server.port}/slow/repo.git"
    job_id = plane.enqueue(job_data(git_url=url, timeout_seconds=3))
    process = start_process(agent_env(tmp_path, plane, AGENT_DRAIN_SECONDS="20"))
    plane.wait_for(lambda: plane.leases.get(job_id) and plane.leases[job_id].renewals)

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)

    assert process.returncode == 0, stderr
    [report] = completions(plane, job_id)
    assert report["error"]["code"] == "timeout"
    assert plane.leases[job_id].releases == []
