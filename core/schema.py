"""Shared pieces of the OpenAPI description: the one error body every refusal uses, and the
refusals made before a view runs, documented on every operation that can give them."""

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, serializers
from rest_framework.authentication import SessionAuthentication


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="What went wrong, for people.")
    code = serializers.CharField(help_text="What went wrong, for programs.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Each offending field with its reasons.",
    )


_MEANING = {
    400: "Invalid input; `fields` names each offending field.",
    401: "Missing, malformed, unknown, revoked or expired token.",
    403: "Authenticated but not allowed (or, with a session login, no CSRF token).",
    404: "No such object, or not yours.",
    409: "Refused in the current state (see `code`).",
    413: "Request body too large.",
    415: "Not JSON in UTF-8.",
    429: "Too many requests from this person (`API_USER_RATE`); retry after `Retry-After`.",
}


def _error(status: int) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=_MEANING[status])


def errors(*statuses: int, body: bool = True) -> dict[int, OpenApiResponse]:
    """Error responses for `extend_schema(responses=…)`: 400, 401 and 413 always apply (a
    malformed or oversized Content-Length is refused on any request), 415 to calls with a body."""
    wanted = sorted({400, 401, 413, *statuses, *([415] if body else [])})
    return {status: _error(status) for status in wanted}


class AutoSchema(openapi.AutoSchema):
    """Adds the refusals DRF makes before a view runs, so that no operation can forget them:
    403 from a permission beyond being logged in, or from the CSRF check a session login gets
    on unsafe methods; 429 from a throttle. Views declare their own refusals with `errors()`."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        refusals = []
        if self._may_forbid():
            refusals.append("403")
        if self.view.get_throttles():
            refusals.append("429")
        for status in refusals:
            if status not in responses:
                responses[status] = self._get_response_for_code(
                    _error(int(status)), status, direction=direction
                )
        return dict(sorted(responses.items()))

    def _may_forbid(self) -> bool:
        needs_more_than_login = any(
            not isinstance(p, (permissions.IsAuthenticated, permissions.AllowAny))
            for p in self.view.get_permissions()
        )
        csrf_checked = self.method not in permissions.SAFE_METHODS and any(
            isinstance(a, SessionAuthentication) for a in self.view.get_authenticators()
        )
        return needs_more_than_login or csrf_checked
