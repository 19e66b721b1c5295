"""Admin pieces shared by apps: the "shown once" flow for freshly issued secrets.

A secret is shown on the page that answers the request that issued it and nowhere else: never
in a message, the session or a redirect. Only its hash is stored, so no page can show it again.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

SHOWN_ONCE_TEMPLATE = "admin/accounts/token_issued.html"

# The request attribute that carries a secret from `save_model` to `response_add`.
_ISSUED_ON_ADD = "_issued_on_add"


class ShowOnceAdminMixin:
    """For a `ModelAdmin` whose add (or an action) issues a secret that is shown exactly once.

    `save_model` calls `issued_on_add(request, plaintext)`; `response_add` then answers with the
    shown-once page instead of a redirect. Subclasses say how to label it (`shown_once_add`).
    """

    admin_site: admin.AdminSite
    shown_once_usage: ClassVar[str] = ""
    """One sentence under the secrets: where to put them."""

    def issued_on_add(self, request: HttpRequest, plaintext: str) -> None:
        """Hands the plaintext to `response_add` of this request only; it is never stored."""
        setattr(request, _ISSUED_ON_ADD, plaintext)

    def shown_once_add(self, request: HttpRequest, obj: Model, plaintext: str) -> HttpResponse:
        """The page that answers an add which issued a secret; subclasses give title and label."""
        raise NotImplementedError

    def response_add(
        self, request: HttpRequest, obj: Model, post_url_continue: str | None = None
    ) -> HttpResponse:
        plaintext = getattr(request, _ISSUED_ON_ADD, None)
        if plaintext is None:
            return super().response_add(request, obj, post_url_continue)  # type: ignore[misc]
        return self.shown_once_add(request, obj, plaintext)

    def show_once(
        self,
        request: HttpRequest,
        *,
        title: str,
        issued: list[tuple[str, str]],
        continue_url: str,
    ) -> TemplateResponse:
        """The one page that shows freshly issued secrets, as (label, plaintext) pairs.

        Admin views are wrapped in `never_cache`, so browsers and proxies keep no copy.
        """
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": title,
            "issued": issued,
            "usage": self.shown_once_usage,
            "continue_url": continue_url,
        }
        return TemplateResponse(request, SHOWN_ONCE_TEMPLATE, context)
