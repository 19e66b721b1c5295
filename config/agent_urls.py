"""The URLs `config.handlers.AgentAPIHandler` resolves: the agent API alone.

Resolving an agent call against the whole site's URLs tries every `api/v1/` include first,
each miss raising and catching its own `Resolver404` and leaving lists of what it tried in a
reference cycle, which only the garbage collector frees: dozens of objects per call.
"""

from django.urls import include, path

urlpatterns = [path("api/v1/agent/", include("projects.agent_api_urls"))]

handler404 = "core.errors.page_not_found"
handler500 = "core.errors.server_error"
