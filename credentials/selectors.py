"""Reads of credentials, as each person may see them."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from credentials.models import Credential


def visible_credentials(user: AbstractBaseUser) -> QuerySet[Credential]:
    """Staff see every credential; everyone else sees their own."""
    credentials = Credential.objects.select_related("owner")
    return credentials if user.is_staff else credentials.filter(owner=user)


def credential_for(user: AbstractBaseUser, credential_id) -> Credential:
    """The credential if `user` may see it; 404 otherwise, so others' credentials do not leak."""
    return get_object_or_404(visible_credentials(user), pk=credential_id)


def owned_credential(user: AbstractBaseUser, credential_id) -> Credential:
    """The credential if `user` owns it; 404 otherwise. Changes are the owner's alone."""
    return get_object_or_404(Credential.objects.filter(owner=user), pk=credential_id)


def projects_using(credential: Credential) -> list[dict]:
    """The projects that use `credential` now, as `{"id", "name"}`; deleted ones are left out.

    Read through the reverse relation the project projection declares, so this app imports
    nothing of `projects`.
    """
    projects = credential.projects.exclude(status="deleted").order_by("created_at")
    return [{"id": project.pk, "name": project.name} for project in projects]
