"""Every signed-in person's own page: their projects and their API tokens.

The admin is for staff; this page is how everyone else helps themselves. It lives with the
projects because it shows them (accounts sits beneath projects and must not import them).
Tokens are issued and revoked through `accounts.services`, like the API and the admin.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts import selectors as token_selectors
from accounts import services as token_services
from accounts.forms import IssueTokenForm
from accounts.models import ApiToken
from core.exceptions import DomainError
from projects.models import Project, ProjectStatus
from projects.selectors import failure_reason, with_open_jobs


def _own_projects(request: HttpRequest) -> list[dict]:
    projects = with_open_jobs(
        Project.objects.select_related("node")
        .filter(owner=request.user)
        .exclude(status=ProjectStatus.DELETED)
        .order_by("name")
    )
    return [{"project": project, "reason": failure_reason(project)} for project in projects]


def _own_tokens(request: HttpRequest) -> list[ApiToken]:
    return list(token_selectors.visible_tokens(request.user).filter(user=request.user))


def _page(request: HttpRequest, form: IssueTokenForm, status: int = 200) -> HttpResponse:
    context = {"projects": _own_projects(request), "tokens": _own_tokens(request), "form": form}
    return render(request, "account/home.html", context, status=status)


@never_cache
@login_required
@require_http_methods(["GET", "HEAD"])
def home(request: HttpRequest) -> HttpResponse:
    """The account page: projects with their status and why they failed, tokens to manage."""
    return _page(request, IssueTokenForm())


@never_cache
@login_required
@require_POST
def issue_token(request: HttpRequest) -> HttpResponse:
    """Issues a token for the signed-in person and shows it on this answer only."""
    form = IssueTokenForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    try:
        token, plaintext = token_services.issue_api_token(
            user=request.user,
            issued_by=request.user,
            name=form.cleaned_data["name"],
            expires_at=form.cleaned_data["expires_on"],
        )
    except DomainError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return _page(request, form, status=400)
    return render(request, "account/token_issued.html", {"token": token, "plaintext": plaintext})


@never_cache
@login_required
@require_POST
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    """Revokes one of the signed-in person's own tokens; another's is not found."""
    own = token_selectors.visible_tokens(request.user).filter(user=request.user)
    token = get_object_or_404(own, pk=token_id)
    token_services.revoke_api_token(token=token, revoked_by=request.user)
    messages.info(request, f"Revoked {token}.")
    return HttpResponseRedirect(reverse("account"))
