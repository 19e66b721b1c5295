"""The typed client: each protocol verb, and how each kind of answer surfaces."""

from __future__ import annotations

import uuid

import pytest

from agent import __version__
from agent.client import (
    AgentClient,
    ClientError,
    InstanceSuperseded,
    LeaseLost,
    ServerUnavailable,
)
from tests.agent.conftest import job_data
from tests.agent.fake_control_plane import TOKEN, FakeControlPlane
from tests.agent.gitservers import free_port


@pytest.fixture
def plane():
    plane = FakeControlPlane()
    yield plane
    plane.stop()


@pytest.fixture
def client(plane):
    client = AgentClient(plane.url, TOKEN)
    yield client
    client.close()


def lease(client, request_id=None, wait=0):
    return client.lease(
        instance_id=str(uuid.uuid4()),
        request_id=request_id or str(uuid.uuid4()),
        wait=wait,
        slots=1,
    )


def test_heartbeat_sends_who_and_how_the_agent_is(plane, client):
    instance = str(uuid.uuid4())

    answer = client.heartbeat(
        instance_id=instance, hostname="gpu-07", disk_free_bytes=123, running_jobs=["j1"]
    )

    assert answer["heartbeat_seconds"] == 1
    [call] = plane.calls_to("heartbeat")
    assert call.body == {
        "instance_id": instance, "agent_version": __version__, "hostname": "gpu-07",
        "disk_free_bytes": 123, "running_jobs": ["j1"],
    }  # fmt: skip


def test_an_empty_long_poll_is_none(client):
    assert lease(client, wait=0) is None


def test_a_lease_carries_the_job_and_its_lease(plane, client):
    job_id = plane.enqueue(job_data())

    leased = lease(client)

    assert leased.job_id == job_id
    assert leased.job["kind"] == "clone"
    assert leased.lease.token == plane.leases[job_id].token
    assert leased.lease.renew_every_seconds == 1


def test_the_same_request_id_gets_the_same_lease_back(plane, client):
    plane.enqueue(job_data())
    plane.enqueue(job_data())
    request_id = str(uuid.uuid4())

    first, again = lease(client, request_id), lease(client, request_id)

    assert first == again
    assert len(plane.queue) == 1


def test_renew_carries_progress_and_a_lost_lease_raises(plane, client):
    job_id = plane.enqueue(job_data())
    token = lease(client).lease.token

    client.renew(job_id, lease_token=token, progress={"phase": "receiving", "percent": 5})
    plane.lose_lease(job_id)

    with pytest.raises(LeaseLost):
        client.renew(job_id, lease_token=token)
    assert plane.leases[job_id].renewals == [
        {"lease_token": token, "progress": {"phase": "receiving", "percent": 5}}
    ]


def test_complete_and_release_bodies(plane, client):
    first, second = plane.enqueue(job_data()), plane.enqueue(job_data())
    first_token, second_token = lease(client).lease.token, lease(client).lease.token
    result = {
        "commit": "a" * 40,
        "branch": "main",
        "local_path": "/p",
        "duration_ms": 1,
        "size_bytes": 2,
    }

    client.complete(first, lease_token=first_token, result=result)
    client.release(second, lease_token=second_token)

    assert plane.leases[first].completions == [
        {"lease_token": first_token, "outcome": "succeeded", "result": result}
    ]
    assert plane.leases[second].releases == [
        {"lease_token": second_token, "reason": "agent_shutdown"}
    ]
    with pytest.raises(ValueError):
        client.complete(first, lease_token=first_token)


def test_5xx_and_429_are_server_unavailable(plane, client):
    plane.fail_next("heartbeat", 503, 429)

    for _ in range(2):
        with pytest.raises(ServerUnavailable):
            client.heartbeat(
                instance_id=str(uuid.uuid4()), hostname="h", disk_free_bytes=0, running_jobs=[]
            )


def test_no_server_is_server_unavailable():
    client = AgentClient(f"http://127.0.0.1:{free_port()}", TOKEN)

    with pytest.raises(ServerUnavailable):
        lease(client)


def test_a_wrong_token_is_a_client_error(plane):
    client = AgentClient(plane.url, "gfa_wrong")

    with pytest.raises(ClientError) as raised:
        lease(client)

    assert (raised.value.status, raised.value.code) == (401, "not_authenticated")


def test_a_superseded_instance_is_told_so(plane, client):
    plane.superseded = True

    with pytest.raises(InstanceSuperseded):
        lease(client)


def test_a_netrc_entry_never_replaces_the_agent_token(plane, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password elsewhere\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client = AgentClient(plane.url, TOKEN)

    assert lease(client) is None
