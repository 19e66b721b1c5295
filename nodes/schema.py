"""OpenAPI description of agent bearer tokens (imported by the app config)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class AgentTokenScheme(OpenApiAuthenticationExtension):
    target_class = "nodes.authentication.AgentTokenAuthentication"
    name = "agentToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A node's agent token (`gfa_…`), from the admin or "
            "`manage.py create_node NAME`. Valid only for that node's jobs.",
        }
