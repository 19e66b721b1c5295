"""Shared pieces of the OpenAPI description: the one error body every refusal uses."""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


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
    401: "Missing, malformed, unknown or revoked token.",
    403: "Authenticated but not allowed.",
    404: "No such object, or not yours.",
    409: "Refused in the current state (see `code`).",
    413: "Request body too large.",
    415: "Not JSON in UTF-8.",
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Error responses for `extend_schema(responses=…)`; 400, 401 and 415 always apply."""
    wanted = sorted({400, 401, 413, 415, *statuses})
    return {
        status: OpenApiResponse(ErrorSerializer, description=_MEANING[status]) for status in wanted
    }
