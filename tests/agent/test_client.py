"""The typed client against the real server: each protocol verb, and how each answer surfaces.

Calls go through a fault proxy (tests/faultproxy.py) that records what the client sent and can
make the wire fail; the answers come from the real server.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent import __version__
from agent.client import (
    AgentClient,
    ClientError,
    InstanceSuperseded,
    LeaseLost,
    ServerUnavailable,
)
from tests.support.faultproxy import FaultProxy
from tests.support.fleet import ControlPlane
from tests.support.gitservers import free_port, serve_in_background

pytestmark = pytest.mark.e2e

GIT_URL = "git://127.0.0.1:9418/group/repo.git"
A_COMMIT = "a" * 40


@pytest.fixture
def proxy(control_plane):
    proxy = FaultProxy(control_plane.url)
    yield proxy
    proxy.stop()


@pytest.fixture
def node(control_plane):
    return control_plane.new_node()


@pytest.fixture
def client(proxy, node):
    client = AgentClient(proxy.url, node.token)
    yield client
    client.close()


@pytest.fixture
def instance() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One person's jobs leased at once: these tests hold several leases of one node."""
    plane = ControlPlane(
        tmp_path_factory.mktemp("control-plane"), MAX_RUNNING_JOBS_PER_USER_PER_NODE="10"
    )
    yield plane
    plane.close()


def lease(client, instance, request_id=None, wait=0):
    return client.lease(instance_id=instance, request_id=request_id or str(uuid.uuid4()), wait=wait)


def heartbeat(client, instance, **fields):
    body = {"hostname": "h", "disk_free_bytes": 0, "running_jobs": [], **fields}
    return client.heartbeat(instance_id=instance, **body)


def test_heartbeat_sends_who_and_how_the_agent_is(control_plane, proxy, client, node, instance):
    running = str(uuid.uuid4())

    answer = client.heartbeat(
        instance_id=instance, hostname="gpu-07", disk_free_bytes=123, running_jobs=[running]
    )

    assert answer["heartbeat_seconds"] == 1  # the server's LEASE_RENEW_SECONDS
    [call] = proxy.calls_to("heartbeat")
    assert call.body == {
        "instance_id": instance, "agent_version": __version__, "hostname": "gpu-07",
        "disk_free_bytes": 123, "running_jobs": [running],
    }  # fmt: skip
    shown = control_plane.listed_node(node.name)
    assert (shown["online"], shown["agent_version"], shown["hostname"]) == (
        True,
        __version__,
        "gpu-07",
    )
    assert (shown["disk_free_bytes"], shown["running_jobs"]) == (123, 1)


def test_an_empty_long_poll_is_none(client, instance):
    assert lease(client, instance, wait=0) is None


def test_a_long_poll_is_held_and_answered_when_a_job_arrives(control_plane, client, node, instance):
    heartbeat(client, instance)
    leased = []
    poller = threading.Thread(target=lambda: leased.append(lease(client, instance, wait=10)))
    poller.start()
    time.sleep(0.5)  # the poll is waiting on the server now

    job = control_plane.clone(node, GIT_URL)["job"]
    poller.join(15)

    assert [item.job_id for item in leased] == [job["id"]]


def test_a_lease_carries_the_job_and_its_lease(control_plane, client, node, instance):
    heartbeat(client, instance)
    accepted = control_plane.clone(node, GIT_URL, branch="dev")

    leased = lease(client, instance)

    assert leased.job_id == accepted["job"]["id"]
    assert leased.job["kind"] == "clone"
    assert (leased.job["git_url"], leased.job["branch"]) == (GIT_URL, "dev")
    assert leased.job["target_path"] == accepted["project"]["target_path"]
    assert (leased.lease.attempt, leased.lease.renew_every_seconds) == (1, 1)
    assert leased.lease.token and leased.lease.expires_at
    # LEASE_SECONDS is 6; the Date header's whole seconds make the local reading err early.
    assert 3 < leased.lease.deadline - time.monotonic() <= 6
    # The stored event keeps the instance; what the project's owner reads never shows it.
    [event] = control_plane.events_of(accepted["project"]["id"], "JobLeased")
    assert "instance_id" not in event["data"]


def test_the_same_request_id_gets_the_same_lease_back(control_plane, client, node, instance):
    heartbeat(client, instance)
    first_job = control_plane.clone(node, GIT_URL)
    second_job = control_plane.clone(node, GIT_URL)
    request_id = str(uuid.uuid4())

    first, again = lease(client, instance, request_id), lease(client, instance, request_id)

    assert first == again
    assert first.job_id == first_job["job"]["id"]
    assert len(control_plane.events_of(first_job["project"]["id"], "JobLeased")) == 1
    assert lease(client, instance).job_id == second_job["job"]["id"]
    assert lease(client, instance) is None


def test_renew_carries_progress_and_a_lost_lease_raises(control_plane, client, node, instance):
    heartbeat(client, instance)
    accepted = control_plane.clone(node, GIT_URL)
    project_id, job_id = accepted["project"]["id"], accepted["job"]["id"]
    token = lease(client, instance).lease.token

    answer = client.renew(job_id, lease_token=token, progress={"phase": "receiving", "percent": 5})
    assert control_plane.user.status(project_id)["active_job"]["progress"] == {
        "phase": "receiving",
        "percent": 5,
    }
    cancel = control_plane.user.http.post(f"/api/v1/projects/{project_id}/jobs/{job_id}/cancel")
    assert cancel.status_code == 202

    with pytest.raises(LeaseLost):
        client.renew(job_id, lease_token=token)
    assert answer.expires_at
    assert 3 < answer.deadline - time.monotonic() <= 6
    [renewed] = control_plane.events_of(project_id, "JobLeaseRenewed")
    assert renewed["data"]["progress"] == {"phase": "receiving", "percent": 5}


def test_renewing_another_nodes_job_is_a_client_error(control_plane, client, instance):
    other = control_plane.new_node()
    job_id = control_plane.clone(other, GIT_URL)["job"]["id"]

    with pytest.raises(ClientError) as raised:
        client.renew(job_id, lease_token="x" * 20)

    assert raised.value.status == 404
    assert not isinstance(raised.value, LeaseLost)


def test_complete_and_release(control_plane, proxy, client, node, instance):
    heartbeat(client, instance)
    done, given_back = control_plane.clone(node, GIT_URL), control_plane.clone(node, GIT_URL)
    done_token = lease(client, instance).lease.token
    given_back_token = lease(client, instance).lease.token
    result = {
        "commit": A_COMMIT,
        "branch": "main",
        "local_path": "/p",
        "duration_ms": 1,
        "size_bytes": 2,
    }

    answer = client.complete(done["job"]["id"], lease_token=done_token, result=result)
    again = client.complete(done["job"]["id"], lease_token=done_token, result=result)
    client.release(given_back["job"]["id"], lease_token=given_back_token)

    assert answer == again  # idempotent: the same report gets the same answer
    assert answer["job"]["state"] == "succeeded"
    status = control_plane.user.status(done["project"]["id"])
    assert (status["status"], status["commit"]) == ("ready", A_COMMIT)
    assert control_plane.event_types(done["project"]["id"]).count("JobSucceeded") == 1
    [released] = control_plane.events_of(given_back["project"]["id"], "JobLeaseReleased")
    assert released["data"]["reason"] == "agent_shutdown"
    assert control_plane.user.status(given_back["project"]["id"])["active_job"]["state"] == (
        "queued"
    )
    [completion, *_] = proxy.calls_to("complete")
    assert completion.body == {"lease_token": done_token, "outcome": "succeeded", "result": result}
    with pytest.raises(ValueError):
        client.complete(done["job"]["id"], lease_token=done_token)


def test_a_failure_report_and_a_stale_token(control_plane, client, node, instance):
    heartbeat(client, instance)
    accepted = control_plane.clone(node, GIT_URL)
    token = lease(client, instance).lease.token
    error = {"code": "branch_not_found", "message": "no dev", "retryable": False}

    client.complete(accepted["job"]["id"], lease_token=token, error=error)

    status = control_plane.user.status(accepted["project"]["id"])
    assert (status["status"], status["last_error"]["code"]) == ("failed", "branch_not_found")
    with pytest.raises(LeaseLost):
        client.complete(accepted["job"]["id"], lease_token=token + "x", error=error)


def test_5xx_and_429_are_server_unavailable(proxy, client, instance):
    proxy.fail("/heartbeat", 503)
    proxy.fail("/heartbeat", 429, retry_after=7)

    with pytest.raises(ServerUnavailable) as unavailable:
        heartbeat(client, instance)
    with pytest.raises(ServerUnavailable) as limited:
        heartbeat(client, instance)

    assert (unavailable.value.retry_after, limited.value.retry_after) == (None, 7.0)
    assert heartbeat(client, instance)["heartbeat_seconds"] == 1
    assert [call.forwarded for call in proxy.calls_to("heartbeat")] == [False, False, True]


def test_no_server_is_server_unavailable(node, instance):
    client = AgentClient(f"http://127.0.0.1:{free_port()}", node.token)

    with pytest.raises(ServerUnavailable):
        lease(client, instance)


def test_the_client_recovers_when_a_server_that_went_away_comes_back(proxy, client, instance):
    assert lease(client, instance) is None  # a pooled connection now exists
    proxy.refuse_connections()

    with pytest.raises(ServerUnavailable):
        lease(client, instance)
    proxy.accept_connections()

    assert lease(client, instance) is None


def test_a_lost_answer_is_server_unavailable(proxy, client, instance):
    proxy.drop_response("/heartbeat")

    with pytest.raises(ServerUnavailable):
        heartbeat(client, instance)

    [call] = proxy.calls_to("heartbeat")
    assert (call.forwarded, call.status) == (True, None)


def test_a_wrong_token_is_a_client_error(proxy, instance):
    client = AgentClient(proxy.url, "gfa_wrong")

    with pytest.raises(ClientError) as raised:
        lease(client, instance)

    assert raised.value.status == 401
    assert raised.value.code == "authentication_failed"


def test_a_superseded_instance_is_told_so(control_plane, client, node, instance):
    heartbeat(client, instance)
    heartbeat(client, str(uuid.uuid4()))  # another process with the same token starts

    with pytest.raises(InstanceSuperseded):
        lease(client, instance)
    with pytest.raises(InstanceSuperseded):
        heartbeat(client, instance)
    assert control_plane.listed_node(node.name)["duplicate_instance"] is True


def test_a_netrc_entry_never_replaces_the_agent_token(proxy, node, instance, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password elsewhere\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client = AgentClient(proxy.url, node.token)

    assert lease(client, instance) is None


def test_a_lease_deadline_follows_the_servers_clock_not_the_local_one():
    # A server whose clock is an hour ahead: its expires_at is 60 s after its own now.
    server_now = datetime.now(UTC) + timedelta(hours=1)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def date_time_string(self, timestamp: float | None = None) -> str:
            return format_datetime(server_now, usegmt=True)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"expires_at": (server_now + timedelta(seconds=60)).isoformat()})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serve_in_background(server)
    client = AgentClient(f"http://127.0.0.1:{server.server_address[1]}", "gfa_test")
    try:
        renewal = client.renew(str(uuid.uuid4()), lease_token="t" * 20)
    finally:
        client.close()
        server.shutdown()
        server.server_close()

    assert 57 < renewal.deadline - time.monotonic() <= 60
