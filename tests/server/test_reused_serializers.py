"""The agent API validates and renders through serializers bound once per thread
(`core.serializers`): every input gets what a fresh serializer gives it, valid or not, in any
order, from any thread."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from rest_framework.exceptions import ValidationError

from core.serializers import rendered, validated
from projects import leases, services
from projects.agent_api import (
    CompleteRequestSerializer,
    CompleteResponseSerializer,
    HeartbeatRequestSerializer,
    LeaseRequestSerializer,
    LeaseResponseSerializer,
    ReleaseRequestSerializer,
    RenewRequestSerializer,
)

INSTANCE = str(uuid.uuid4())
RESULT = {
    "commit": "a" * 40,
    "branch": "main",
    "local_path": "1_p",
    "duration_ms": 1,
    "size_bytes": 2,
}

CASES = [
    (LeaseRequestSerializer, {"instance_id": INSTANCE, "request_id": "req-00001", "wait": 5}),
    (LeaseRequestSerializer, {"instance_id": INSTANCE, "request_id": "req-00001"}),
    (LeaseRequestSerializer, {"instance_id": INSTANCE, "request_id": "short"}),
    (LeaseRequestSerializer, {"instance_id": INSTANCE, "request_id": "req-00001", "wait": 10**6}),
    (LeaseRequestSerializer, {"instance_id": 7, "request_id": "req-00001", "slots": 2}),
    (LeaseRequestSerializer, {}),
    (LeaseRequestSerializer, ["not", "an", "object"]),
    (CompleteRequestSerializer, {"lease_token": "t", "outcome": "succeeded", "result": RESULT}),
    (CompleteRequestSerializer, {"lease_token": "t", "outcome": "succeeded"}),
    (
        CompleteRequestSerializer,
        {"lease_token": "t", "outcome": "succeeded", "result": {**RESULT, "commit": "xyz"}},
    ),
    (
        CompleteRequestSerializer,
        {"lease_token": "t", "outcome": "succeeded", "result": {**RESULT, "workspace": [1]}},
    ),
    (
        CompleteRequestSerializer,
        {"lease_token": "t", "outcome": "succeeded", "result": {**RESULT, "owner": "x"}},
    ),
    (
        CompleteRequestSerializer,
        {
            "lease_token": "t",
            "outcome": "failed",
            "error": {"code": "clone_failed", "message": "no", "retryable": False},
        },
    ),
    (
        CompleteRequestSerializer,
        {"lease_token": "t", "outcome": "failed", "error": {"code": "Bad Code", "message": 3}},
    ),
    (RenewRequestSerializer, {"lease_token": "t", "progress": {"phase": "fetch", "percent": 40}}),
    (RenewRequestSerializer, {"lease_token": "t", "progress": {"percent": 101}}),
    (ReleaseRequestSerializer, {"lease_token": "t"}),
    (ReleaseRequestSerializer, {"lease_token": "t", "reason": "Not A Reason"}),
    (
        HeartbeatRequestSerializer,
        {
            "instance_id": INSTANCE,
            "agent_version": "1",
            "hostname": "h",
            "running_jobs": [INSTANCE],
        },
    ),
    (
        HeartbeatRequestSerializer,
        {"instance_id": INSTANCE, "agent_version": "1", "hostname": "h", "disk_free_bytes": -1},
    ),
]


def fresh(serializer_class, data):
    """What a serializer made for this one call says: ("valid", data) or ("invalid", errors)."""
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return ("valid", serializer.validated_data)
    return ("invalid", serializer.errors)


def reused(serializer_class, data):
    try:
        return ("valid", validated(serializer_class, data))
    except ValidationError as refusal:
        return ("invalid", refusal.detail)


def test_every_input_gets_what_a_fresh_serializer_gives_it():
    expected = [fresh(serializer_class, data) for serializer_class, data in CASES]
    assert {verdict for verdict, _ in expected} == {"valid", "invalid"}

    # Twice over, so that each bound serializer sees valid and invalid inputs before the next.
    for _ in range(2):
        assert [reused(serializer_class, data) for serializer_class, data in CASES] == expected


def test_threads_validating_at_once_each_get_their_own_answer():
    expected = [fresh(serializer_class, data) for serializer_class, data in CASES]

    def run(index: int):
        serializer_class, data = CASES[index % len(CASES)]
        return reused(serializer_class, data)

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(run, range(len(CASES) * 10)))

    assert answers == [expected[index % len(CASES)] for index in range(len(CASES) * 10)]


@pytest.mark.django_db(transaction=True)
def test_the_lease_and_the_completion_are_rendered_as_a_fresh_serializer_renders_them(user, node):
    services.request_clone(
        owner=user, name="p", git_url="https://h/r.git", branch="main", node=node
    )
    grant = leases.lease(node=node, request_id="req-00001", instance_id=INSTANCE)
    job = leases.complete(
        node=node, job_id=grant.job.id, lease_token=grant.job.lease_token, result=RESULT
    )

    assert rendered(LeaseResponseSerializer, grant) == LeaseResponseSerializer(grant).data
    assert rendered(LeaseResponseSerializer, grant)["lease"]["token"] == grant.job.lease_token
    answer = rendered(CompleteResponseSerializer, {"job": job})
    assert answer == CompleteResponseSerializer({"job": job}).data
    assert (answer["job"]["state"], answer["job"]["result"]["commit"]) == ("succeeded", "a" * 40)
