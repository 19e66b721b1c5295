"""One shape for every error the API answers: `{"error", "code", "fields"?}`, always JSON.

Domain exceptions from the service layer are mapped to HTTP statuses here and nowhere else.
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.exceptions import DomainError
from core.parsers import PayloadTooLarge

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


def domain_error_response(exc: DomainError) -> JsonResponse:
    return JsonResponse(_domain_error_body(exc), status=exc.status)


def exception_handler(exc: Exception, context: dict) -> Response | None:
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


def server_error(request: HttpRequest) -> HttpResponse:
    """`handler500`: a crash under /api/ still answers in JSON, and says nothing more."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("Server error.", "server_error"), status=500)
    return defaults.server_error(request)
