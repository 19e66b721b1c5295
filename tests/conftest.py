"""Fixtures shared by the whole suite: people, nodes, and clients that speak as them.

Everything runs against the real database named by DATABASE_URL (SQLite by default). Helpers
that are not fixtures live in `tests/support/`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts.services import issue_api_token
from nodes.models import Node
from nodes.services import create_node
from tests.support.api import bearer_client, bring_online

pytest_plugins = ["tests.support.fixtures"]

logging.getLogger("httpx").setLevel(logging.WARNING)


@pytest.fixture
def make_user(db) -> Callable[..., object]:
    def make(username: str = "alice", *, staff: bool = False):
        return get_user_model().objects.create_user(
            username=username, password="pw-" + uuid.uuid4().hex, is_staff=staff
        )

    return make


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def api(user) -> APIClient:
    """A client authenticated as `user` with an API token."""
    _, plaintext = issue_api_token(user=user, name="tests")
    return bearer_client(plaintext)


@pytest.fixture
def api_for(db) -> Callable[[object], APIClient]:
    def make(person) -> APIClient:
        _, plaintext = issue_api_token(user=person, name="tests")
        return bearer_client(plaintext)

    return make


@pytest.fixture
def make_node(db) -> Callable[..., tuple[Node, str]]:
    def make(name: str = "node-1", *, online: bool = True) -> tuple[Node, str]:
        node, token = create_node(name=name)
        if online:
            bring_online(node)
        return node, token

    return make


@pytest.fixture
def node_and_token(make_node) -> tuple[Node, str]:
    return make_node("node-1")


@pytest.fixture
def node(node_and_token) -> Node:
    return node_and_token[0]


@pytest.fixture
def agent(node_and_token) -> APIClient:
    """A client authenticated as `node`'s agent."""
    return bearer_client(node_and_token[1])
