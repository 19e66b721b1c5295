"""`core.prepared.Prepared` gives what the ORM gives, with the SQL compiled once."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.prepared import Prepared
from nodes.models import AgentToken, Node

pytestmark = pytest.mark.django_db


def _fields(obj) -> dict:
    return {field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields}


def test_rows_become_the_instances_the_orm_makes_related_rows_included(make_node):
    node, _ = make_node("node-1")
    make_node("node-2")
    Node.objects.filter(pk=node.pk).update(disk_free_bytes=123, git_version="2.39.5")
    lookup = Prepared(
        lambda key_id: AgentToken.objects.select_related("node").filter(key_id=key_id), 1
    )

    for token in AgentToken.objects.all():
        expected = AgentToken.objects.select_related("node").get(key_id=token.key_id)
        with CaptureQueriesContext(connection) as queries:
            found = lookup.first(token.key_id)
            related = found.node  # joined already: no second statement
        assert len(queries) == 1
        assert _fields(found) == _fields(expected)
        assert _fields(related) == _fields(expected.node)
        assert found._state.adding is False and found._state.db == "default"
    assert lookup.first("no-such-key") is None


def test_the_values_may_come_in_any_order(make_node):
    make_node("node-1")
    make_node("node-2")
    Node.objects.filter(name="node-2").update(hostname="gpu-2")
    by_host_and_name = Prepared(
        lambda hostname, name: Node.objects.filter(name=name, hostname=hostname), 2
    )
    assert by_host_and_name.first("gpu-2", "node-2").name == "node-2"
    assert by_host_and_name.first("gpu-1", "node-2") is None
    assert by_host_and_name.all("", "node-1") == [Node.objects.get(name="node-1")]


def test_a_queryset_with_parameters_of_its_own_is_refused(make_node):
    own = Prepared(lambda name: Node.objects.filter(name=name, hostname="gpu-1"), 1)
    with pytest.raises(ValueError, match="parameters"):
        own.first("node-1")
    with pytest.raises(TypeError):
        Prepared(lambda name: Node.objects.filter(name=name), 1).first("a", "b")
