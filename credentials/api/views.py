"""The credentials API. Views stay thin: parse, call a service or selector, serialize."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.schema import ErrorSerializer, errors
from credentials import selectors, services
from credentials.api.serializers import (
    CredentialCreateSerializer,
    CredentialSerializer,
    SecretRotationSerializer,
)

_NO_KEYS = {
    503: OpenApiResponse(
        ErrorSerializer,
        description="The server has no usable CREDENTIAL_KEYS; `error` says how to make one.",
    )
}


@extend_schema(responses={200: CredentialSerializer, **errors(body=False)})
class CredentialListView(generics.ListAPIView):
    """Your git credentials (staff: everyone's), never with their secrets; or store one."""

    serializer_class = CredentialSerializer

    def get_queryset(self):
        return selectors.visible_credentials(self.request.user)

    @extend_schema(
        request=CredentialCreateSerializer,
        responses={201: CredentialSerializer, **errors(), **_NO_KEYS},
        summary="Store a git credential (token or SSH key), encrypted",
    )
    def post(self, request: Request) -> Response:
        serializer = CredentialCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        credential = services.create_credential(owner=request.user, **serializer.validated_data)
        return Response(CredentialSerializer(credential).data, status=status.HTTP_201_CREATED)


class CredentialDetailView(APIView):
    @extend_schema(
        responses={200: CredentialSerializer, **errors(404, body=False)},
        summary="A git credential, without its secret",
    )
    def get(self, request: Request, credential_id) -> Response:
        credential = selectors.credential_for(request.user, credential_id)
        return Response(CredentialSerializer(credential).data)

    @extend_schema(
        request=None,
        responses={204: None, **errors(404, body=False)},
        summary="Revoke a git credential: its secret is erased and can no longer be used",
    )
    def delete(self, request: Request, credential_id) -> Response:
        credential = selectors.owned_credential(request.user, credential_id)
        services.revoke_credential(credential=credential)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CredentialSecretView(APIView):
    @extend_schema(
        request=SecretRotationSerializer,
        responses={200: CredentialSerializer, **errors(404, 409), **_NO_KEYS},
        summary="Replace a git credential's secret",
    )
    def put(self, request: Request, credential_id) -> Response:
        credential = selectors.owned_credential(request.user, credential_id)
        serializer = SecretRotationSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        credential = services.rotate_secret(
            credential=credential, secret=serializer.validated_data["secret"]
        )
        return Response(CredentialSerializer(credential).data)
