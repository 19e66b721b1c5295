"""The URLs `config.handlers` serves on the async stack when a listing is asked to wait."""

from django.urls import path

from sync import watch

urlpatterns = [
    path("api/v1/projects/<uuid:project_id>/events", watch.project_events),
    path("api/v1/events/", watch.feed),
]

handler404 = "core.errors.page_not_found"
handler500 = "core.errors.server_error"
