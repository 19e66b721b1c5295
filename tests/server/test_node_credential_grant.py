"""`delivery.may_use_node_credentials` answers what `user.has_perm` answers, in one statement."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from projects.delivery import may_use_node_credentials

pytestmark = pytest.mark.django_db

User = get_user_model()


def _grant() -> Permission:
    return Permission.objects.get(
        codename="use_node_credentials", content_type__app_label="projects"
    )


def _people() -> list:
    other = Permission.objects.get(codename="view_project", content_type__app_label="projects")
    crew, bystanders = Group.objects.create(name="crew"), Group.objects.create(name="others")
    crew.permissions.add(_grant())
    bystanders.permissions.add(other)
    people = {
        "plain": User.objects.create_user("plain"),
        "direct": User.objects.create_user("direct"),
        "in_group": User.objects.create_user("in_group"),
        "other_group": User.objects.create_user("other_group"),
        "other_permission": User.objects.create_user("other_permission"),
        "superuser": User.objects.create_superuser("root"),
        "inactive_direct": User.objects.create_user("inactive_direct", is_active=False),
        "inactive_superuser": User.objects.create_superuser("gone", is_active=False),
    }
    people["direct"].user_permissions.add(_grant())
    people["inactive_direct"].user_permissions.add(_grant())
    people["in_group"].groups.add(crew, bystanders)
    people["other_group"].groups.add(bystanders)
    people["other_permission"].user_permissions.add(other)
    return people


def test_it_agrees_with_has_perm_for_every_kind_of_person():
    people = _people()
    answers = {name: may_use_node_credentials(person.pk) for name, person in people.items()}

    expected = {
        name: User.objects.get(pk=person.pk).has_perm("projects.use_node_credentials")
        for name, person in people.items()
    }
    assert answers == expected
    assert {name for name, granted in answers.items() if granted} == {
        "direct",
        "in_group",
        "superuser",
    }


def test_one_statement_and_no_one_for_an_unknown_id():
    person = User.objects.create_user("someone")
    with CaptureQueriesContext(connection) as queries:
        may_use_node_credentials(person.pk)
    assert len(queries) == 1
    assert may_use_node_credentials(person.pk + 1000) is False
