"""OpenAPI description of people's bearer tokens (imported by the app config)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension


class UserTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.UserTokenAuthentication"
    name = "userToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A person's API token (`gfu_…`), from `POST /api/v1/tokens/`, the "
            "`/account/` page, the admin or `manage.py create_token USERNAME`.",
        }


class IssueTokenSchema(OpenApiSerializerExtension):
    """Says in the schema what the serializer does: no properties but the declared."""

    target_class = "accounts.api.IssueTokenSerializer"

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": False}
