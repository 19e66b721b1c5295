"""OpenAPI description of people's bearer tokens (imported by the app config)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class UserTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.UserTokenAuthentication"
    name = "userToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A person's API token (`gfu_…`), from the admin or "
            "`manage.py create_token USERNAME`.",
        }
