from django.urls import path

from projects import agent_api

urlpatterns = [
    path("heartbeat", agent_api.HeartbeatView.as_view(), name="agent-heartbeat"),
    path("lease", agent_api.LeaseView.as_view(), name="agent-lease"),
    path("jobs/<uuid:job_id>/renew", agent_api.RenewView.as_view(), name="agent-renew"),
    path("jobs/<uuid:job_id>/progress", agent_api.ProgressView.as_view(), name="agent-progress"),
    path("jobs/<uuid:job_id>/complete", agent_api.CompleteView.as_view(), name="agent-complete"),
    path("jobs/<uuid:job_id>/release", agent_api.ReleaseView.as_view(), name="agent-release"),
]
