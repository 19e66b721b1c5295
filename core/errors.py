"""One shape for every error the API answers: `{"error", "code", "fields"?}`, always JSON.

Domain exceptions from the service layer are mapped to HTTP statuses here and nowhere else.
"""

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import (
    DisallowedHost,
    PermissionDenied,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.exceptions import DomainError
from core.parsers import PayloadTooLarge

logger = logging.getLogger(__name__)

# Refusals that are about the request itself rather than one body field: which part to name.
_REQUEST_PART_AT_FAULT: tuple[tuple[type[exceptions.APIException], str, str], ...] = (
    (exceptions.UnsupportedMediaType, "Content-Type", " Send application/json in UTF-8."),
    (exceptions.ParseError, "body", ""),
    (PayloadTooLarge, "body", ""),
    (exceptions.NotAuthenticated, "Authorization", ""),
    (exceptions.AuthenticationFailed, "Authorization", ""),
)


def error_body(message: str, code: str, fields: dict[str, list[str]] | None = None) -> dict:
    body: dict[str, Any] = {"error": message, "code": code}
    if fields:
        body["fields"] = fields
    return body


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turns DRF's nested error detail into `{"field.sub": ["reason", ...]}`."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = key if key != "non_field_errors" else "body"
            out.update(_flatten(value, f"{prefix}.{name}" if prefix else name))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {prefix or "body": [str(item) for item in detail]}
        out = {}
        for index, value in enumerate(detail):
            out.update(_flatten(value, f"{prefix}[{index}]"))
        return out
    return {prefix or "body": [str(detail)]}


def _domain_error_body(exc: DomainError) -> dict:
    if not exc.field:
        return error_body(exc.message, exc.code)
    # A service's `Invalid` reads like a serializer's refusal, whichever layer caught the input.
    message = f"Invalid input. {exc.field}: {exc.message}" if exc.status == 400 else exc.message
    return error_body(message, exc.code, {exc.field: [exc.message]})


# Errors that mean the database cannot be reached (or dropped the connection mid-request).
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)


def database_unavailable_body() -> dict:
    return error_body("The database is unavailable; try again shortly.", "database_unavailable")


def database_unavailable_response() -> JsonResponse:
    """503 with `Retry-After`, for a request whose database work could not reach the database."""
    response = JsonResponse(database_unavailable_body(), status=503)
    response["Retry-After"] = str(settings.DATABASE_RETRY_AFTER_SECONDS)
    return response


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DATABASE_UNAVAILABLE):
        logger.warning("database unavailable: %s", exc)
        return Response(
            database_unavailable_body(),
            status=503,
            headers={"Retry-After": str(settings.DATABASE_RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, DomainError):
        return Response(_domain_error_body(exc), status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        # Django's own cap (DATA_UPLOAD_MAX_MEMORY_SIZE) would otherwise answer in HTML.
        exc = PayloadTooLarge(
            f"Request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        summary = "; ".join(f"{name}: {reasons[0]}" for name, reasons in fields.items())
        response.data = error_body(f"Invalid input. {summary}", "invalid", fields)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = getattr(exc, "default_code", "error")
        if isinstance(exc, exceptions.APIException):
            codes = exc.get_codes()
            code = codes if isinstance(codes, str) else code
        fields = None
        for kind, part, advice in _REQUEST_PART_AT_FAULT:
            if isinstance(exc, kind):
                fields = {part: [f"{detail}{advice}"]}
                break
        response.data = error_body(str(detail), code, fields)
    return response


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """`handler404`: unknown URLs under /api/ answer in JSON like every other refusal."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("Not found.", "not_found"), status=404)
    return defaults.page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """`handler400`: a refused `Host` (or another suspicious request) under /api/ answers JSON."""
    if not request.path.startswith("/api/"):
        return defaults.bad_request(request, exception)
    if isinstance(exception, DisallowedHost):
        fields = {"Host": ["Not a host name this server answers to (ALLOWED_HOSTS)."]}
        return JsonResponse(error_body("Invalid Host header.", "bad_host", fields), status=400)
    if isinstance(exception, TooManyFieldsSent | TooManyFilesSent):
        fields = {"body": ["Too many fields."]}
        return JsonResponse(error_body("Bad request.", "bad_request", fields), status=400)
    return JsonResponse(error_body("Bad request.", "bad_request"), status=400)


def get_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wraps a page view (the API docs) so that methods other than GET and HEAD get a JSON 405:
    the page's HTML renderer has no template for anything else."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            message = f'Method "{request.method}" not allowed.'
            fields = {"method": [f"{message} Use GET."]}
            response = JsonResponse(error_body(message, "method_not_allowed", fields), status=405)
            response["Allow"] = "GET, HEAD"
            return response
        return view(request, *args, **kwargs)

    return wrapped


def server_error(request: HttpRequest) -> HttpResponse:
    """`handler500`: a crash under /api/ still answers in JSON, and says nothing more; one that
    could not reach the database (in middleware or the admin) answers 503 anywhere."""
    # Django calls this from inside its `except` block, as its own 500 page does.
    if isinstance(sys.exc_info()[1], DATABASE_UNAVAILABLE):
        return database_unavailable_response()
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("Server error.", "server_error"), status=500)
    return defaults.server_error(request)
