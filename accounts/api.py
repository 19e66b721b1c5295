"""People's own API tokens over the API: list, issue (the plaintext answered once), revoke.

Views parse and serialize; `accounts.services` decides who may issue or revoke what, and
`accounts.selectors` who sees which tokens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from django.contrib.auth.validators import UnicodeUsernameValidator
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.models import ApiToken
from core.schema import errors

_USERNAME = re.compile(UnicodeUsernameValidator.regex)
_USERNAME_MAX_LENGTH = 150


class ApiTokenSerializer(serializers.ModelSerializer):
    """A token as anyone may read it later: never the plaintext, never the digest."""

    prefix = serializers.SerializerMethodField(help_text="How the token starts, to recognise it.")
    user = serializers.CharField(source="user.get_username", read_only=True)
    active = serializers.BooleanField(
        source="is_active", read_only=True, help_text="Neither revoked nor expired."
    )

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "user",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
            "active",
        ]
        read_only_fields = fields

    def get_prefix(self, token: ApiToken) -> str:
        return f"gfu_{token.key_id}"


class IssuedApiTokenSerializer(ApiTokenSerializer):
    """The answer to issuing: the token's row and, this once, the token itself."""

    token = serializers.CharField(
        read_only=True,
        help_text="The token, shown only in this answer: send it as 'Authorization: Bearer …'.",
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class IssueTokenSerializer(serializers.Serializer):
    """What a person may say when issuing a token; nothing else is accepted."""

    name = serializers.CharField(
        max_length=services.NAME_MAX_LENGTH, help_text="What the token is for."
    )
    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text=(
            "When the token stops working (ISO 8601; without a time zone, UTC): in the future and "
            f"at most {services.MAX_TOKEN_LIFETIME.days} days from now. Absent or null: until "
            "revoked."
        ),
    )
    user = serializers.CharField(
        required=False,
        max_length=_USERNAME_MAX_LENGTH,
        help_text=(
            "Whose token it is (a username); absent: yours. Another person's takes a superuser "
            f"or the '{services.ISSUE_FOR_OTHERS_PERMISSION}' permission, since the token acts "
            "as them."
        ),
    )

    def validate_user(self, value: str) -> str:
        if not _USERNAME.match(value):
            raise ValidationError("A username: letters, digits and @ . + - _ only.")
        return value

    def to_internal_value(self, data):
        # Unknown fields are refused rather than ignored (nobody slips in a digest or a key id),
        # and strings must be JSON strings: DRF's CharField would take 5 for "5".
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise ValidationError(
                    {str(k): ["Unknown field; it cannot be set."] for k in unknown}
                )
            for name in ("name", "expires_at", "user"):
                value = data.get(name)
                if value is not None and not isinstance(value, str):
                    raise ValidationError({name: ["Must be a string."]})
        return super().to_internal_value(data)


def _user_filter(request: Request) -> str | None:
    username = request.query_params.get("user")
    if username is None:
        return None
    # Checked before the query: PostgreSQL refuses a NUL in a parameter outright.
    if len(username) > _USERNAME_MAX_LENGTH or not _USERNAME.match(username):
        raise ValidationError({"user": ["A username: letters, digits and @ . + - _ only."]})
    return username


class TokenListView(generics.ListAPIView):
    serializer_class = ApiTokenSerializer

    def get_queryset(self):
        rows = selectors.visible_tokens(self.request.user)
        username = _user_filter(self.request)
        return rows if username is None else rows.filter(user__username=username)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "user",
                str,
                description="Only this person's tokens (by username); staff see everyone's.",
            )
        ],
        responses={200: ApiTokenSerializer, **errors(body=False)},
        summary="Your API tokens (staff: everyone's), newest first",
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=IssueTokenSerializer,
        responses={201: IssuedApiTokenSerializer, **errors(403)},
        summary="Issue an API token (yours, or with a permission another's); the answer is the "
        "only place it is shown",
    )
    def post(self, request: Request) -> Response:
        serializer = IssueTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        owner = services.owner_for(username=data.pop("user", None), issued_by=request.user)
        token, plaintext = services.issue_api_token(user=owner, issued_by=request.user, **data)
        token.token = plaintext
        response = Response(IssuedApiTokenSerializer(token).data, status=status.HTTP_201_CREATED)
        # The answer holds a secret: no browser or proxy may keep a copy.
        response["Cache-Control"] = "no-store"
        return response


class TokenDetailView(APIView):
    @extend_schema(
        request=None,
        responses={200: ApiTokenSerializer, **errors(403, 404, body=False)},
        summary="Revoke an API token; revoking again changes nothing",
    )
    def delete(self, request: Request, token_id: int) -> Response:
        if request.data:
            fields = request.data if isinstance(request.data, Mapping) else {"body": None}
            raise ValidationError({str(k): ["Revoking takes no body."] for k in fields})
        token = selectors.token_for(request.user, token_id)
        services.revoke_api_token(token=token, revoked_by=request.user)
        return Response(ApiTokenSerializer(token).data)
