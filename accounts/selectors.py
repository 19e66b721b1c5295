"""Reads of people's API tokens, as each person may see them."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import ApiToken


def visible_tokens(user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """Staff see everyone's tokens; everyone else sees their own."""
    rows = ApiToken.objects.select_related("user").order_by("-created_at", "-pk")
    return rows if user.is_staff else rows.filter(user=user)


def token_for(user: AbstractBaseUser, token_id: int) -> ApiToken:
    """The token if `user` may see it; 404 otherwise, so others' tokens do not leak."""
    return get_object_or_404(visible_tokens(user), pk=token_id)
