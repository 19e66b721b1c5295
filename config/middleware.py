"""Request-wide middleware: a request id on every request, and a body-size limit answered in JSON."""

import re
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CONTENT_LENGTH = re.compile(r"^[0-9]{1,19}\Z")


class _Middleware:
    """Both sync and async, so async views (the long poll) never hop to a thread for it."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        early = self.before(request)
        if iscoroutinefunction(self):
            return self._acall(request, early)
        response = early if early is not None else self.get_response(request)
        return self.after(request, response)

    async def _acall(self, request: HttpRequest, early: HttpResponse | None):
        response = early if early is not None else await self.get_response(request)
        return self.after(request, response)

    def before(self, request: HttpRequest) -> HttpResponse | None:
        return None

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        return response


class RequestIdMiddleware(_Middleware):
    """Takes a well-formed `X-Request-ID` from the client or makes one, and echoes it back."""

    def before(self, request):
        given = request.headers.get("X-Request-ID", "")
        request.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        return None

    def after(self, request, response):
        response["X-Request-ID"] = request.request_id
        return response


class JsonBodyLimitMiddleware(_Middleware):
    """Refuses declared bodies over `MAX_REQUEST_BODY_BYTES` before anything reads them."""

    def before(self, request):
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if not _CONTENT_LENGTH.match(declared):
            # int() would also take '-1', ' 5', '+5' and non-ASCII digits; HTTP takes 1*DIGIT.
            return JsonResponse(
                {
                    "error": "Content-Length is not a valid size.",
                    "code": "bad_request",
                    "fields": {
                        "Content-Length": [
                            "Not a valid size: give the body's length in bytes, in digits."
                        ]
                    },
                },
                status=400,
            )
        length = int(declared)
        limit = settings.MAX_REQUEST_BODY_BYTES
        if length > limit:
            return JsonResponse(
                {
                    "error": f"Request body is larger than {limit} bytes.",
                    "code": "too_large",
                    "fields": {"body": [f"At most {limit} bytes."]},
                },
                status=413,
            )
        return None
