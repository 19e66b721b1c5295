"""A long poll re-checks its caller before every claim: a token revoked or rotated, or a node
disabled, while the poll waited gets no job; and one agent instance holds one poll at a time.

The polls run through the site's ASGI application (`ASGIClient`, which includes the layer that
holds waiting polls below Django) in threads, while the test changes the world around them.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import transaction

from nodes.models import Node
from nodes.services import revoke_agent_token, rotate_agent_token, set_node_enabled
from projects import leases
from projects.lease_hold import open_polls
from projects.models import Job, JobState
from projects.wakeups import hub
from tests.support.api import AgentSession, ASGIClient, clone_body, event_types

pytestmark = pytest.mark.django_db(transaction=True)


class HeldPoll(threading.Thread):
    """One lease call through the agent API, held on a thread of its own."""

    def __init__(self, session: AgentSession, *, wait: int, request_id: str | None = None):
        super().__init__(daemon=True)
        self.session, self.wait, self.request_id = session, wait, request_id
        self.response = None
        self.answered_after: float | None = None

    def run(self) -> None:
        started = time.monotonic()
        self.response = self.session.lease(wait=self.wait, request_id=self.request_id)
        self.answered_after = time.monotonic() - started

    def answer(self, timeout: float = 15):
        self.join(timeout)
        assert not self.is_alive(), "the poll was not answered"
        return self.response


def hold(session: AgentSession, *, wait: int, request_id: str | None = None) -> HeldPoll:
    """Starts a lease call and returns once it is waiting on the hub."""
    before = hub.waiting
    poll = HeldPoll(session, wait=wait, request_id=request_id)
    poll.start()
    deadline = time.monotonic() + 10
    while hub.waiting <= before:
        assert time.monotonic() < deadline, "the poll never started waiting"
        assert poll.is_alive(), f"the poll was answered at once: {poll.response!r}"
        time.sleep(0.02)
    return poll


@pytest.fixture
def asgi_agent(node_and_token):
    return ASGIClient(node_and_token[1])


@pytest.fixture
def session(asgi_agent):
    return AgentSession(asgi_agent)


def test_a_poll_held_while_its_token_is_rotated_gets_401_not_the_job(session, node, api):
    poll = hold(session, wait=20)
    rotate_agent_token(node=node)

    queued = api.post("/api/v1/projects/clone", clone_body(), format="json")
    response = poll.answer()

    assert queued.status_code == 202
    assert response.status_code == 401, response.content
    assert response.json()["code"] == "authentication_failed"
    assert poll.answered_after < 10  # answered at the wake-up, not at the end of the wait
    assert "JobLeased" not in event_types(queued.json()["project"]["id"])
    assert Job.objects.get().state == JobState.QUEUED


def test_a_poll_held_while_its_token_is_revoked_gets_401(session, node, api):
    poll = hold(session, wait=20)
    for token in node.tokens.all():
        revoke_agent_token(token=token)

    api.post("/api/v1/projects/clone", clone_body(), format="json")

    assert poll.answer().status_code == 401
    assert Job.objects.get().state == JobState.QUEUED


def test_a_poll_held_while_its_node_is_disabled_gets_no_job(session, node, api):
    poll = hold(session, wait=3)
    with transaction.atomic():  # the wake-up is sent on commit, when the node is already off
        queued = api.post("/api/v1/projects/clone", clone_body(), format="json")
        set_node_enabled(node=node, enabled=False)

    response = poll.answer()

    assert queued.status_code == 202
    assert response.status_code == 204
    assert Job.objects.get().state == JobState.QUEUED


def test_a_disabled_node_leases_no_queued_job(session, node, api):
    api.post("/api/v1/projects/clone", clone_body(), format="json")
    set_node_enabled(node=node, enabled=False)

    assert session.lease(wait=0).status_code == 204
    # Even given a node object read before it was disabled, the claim reads the node's state.
    stale = Node(pk=node.pk, name=node.name, enabled=True)
    for woken in (False, True):
        assert (
            leases.lease(node=stale, request_id=uuid.uuid4().hex, instance_id="i", woken=woken)
            is None
        )
    assert Job.objects.get().state == JobState.QUEUED


def test_the_answer_to_a_retried_request_survives_disabling(session, node, api):
    api.post("/api/v1/projects/clone", clone_body(), format="json")
    first = session.lease(request_id="req-00000001")
    set_node_enabled(node=node, enabled=False)

    again = session.lease(request_id="req-00000001")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()


def test_two_polls_at_once_from_one_instance_flag_the_node_and_end_the_older(asgi_agent, node):
    impostor = AgentSession(asgi_agent)
    honest = AgentSession(asgi_agent, instance_id=impostor.instance_id)
    older = hold(impostor, wait=20)

    newer = HeldPoll(honest, wait=1)
    newer.start()
    refused = older.answer()

    assert refused.status_code == 409, refused.content
    assert refused.json()["code"] == "instance_overlap"
    assert "instance_id" in refused.json()["fields"]
    assert newer.answer().status_code == 204
    node.refresh_from_db()
    assert node.duplicate_instance
    assert not open_polls._polls  # both polls let go of their places


def test_a_retry_of_the_same_call_ends_the_older_poll_without_an_alarm(session, node):
    older = hold(session, wait=20, request_id="req-00000007")

    newer = HeldPoll(session, wait=1, request_id="req-00000007")
    newer.start()

    assert older.answer().status_code == 204
    assert older.answered_after < 10
    assert newer.answer().status_code == 204
    node.refresh_from_db()
    assert not node.duplicate_instance
