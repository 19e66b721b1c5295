from django.urls import path

from projects.api import views

urlpatterns = [
    path("projects/clone", views.CloneView.as_view(), name="project-clone"),
    path("projects/", views.ProjectListView.as_view(), name="project-list"),
    path("projects/<uuid:project_id>", views.ProjectDetailView.as_view(), name="project-detail"),
    path(
        "projects/<uuid:project_id>/status",
        views.ProjectStatusView.as_view(),
        name="project-status",
    ),
    path(
        "projects/<uuid:project_id>/events",
        views.ProjectEventsView.as_view(),
        name="project-events",
    ),
    path("projects/<uuid:project_id>/pull", views.PullView.as_view(), name="project-pull"),
    path("projects/<uuid:project_id>/inspect", views.InspectView.as_view(), name="project-inspect"),
    path(
        "projects/<uuid:project_id>/jobs/<uuid:job_id>/cancel",
        views.CancelJobView.as_view(),
        name="job-cancel",
    ),
    path(
        "projects/<uuid:project_id>/jobs/<uuid:job_id>/retry",
        views.RetryJobView.as_view(),
        name="job-retry",
    ),
    path("events/", views.EventFeedView.as_view(), name="event-feed"),
]
