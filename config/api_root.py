"""The browsable API's front page: where everything is."""

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse


@extend_schema(exclude=True)
@api_view(["GET"])
@permission_classes([AllowAny])
def api_root(request: Request) -> Response:
    def link(name: str) -> str:
        return reverse(name, request=request)

    return Response(
        {
            "projects": link("project-list"),
            "clone": link("project-clone"),
            "nodes": link("node-list"),
            "events": link("event-feed"),
            "credentials": link("credential-list"),
            "schema": link("schema"),
            "docs": link("swagger-ui"),
            "redoc": link("redoc"),
        }
    )
