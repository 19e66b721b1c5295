from django.urls import path

from credentials.api import views

urlpatterns = [
    path("credentials/", views.CredentialListView.as_view(), name="credential-list"),
    path(
        "credentials/<uuid:credential_id>",
        views.CredentialDetailView.as_view(),
        name="credential-detail",
    ),
    path(
        "credentials/<uuid:credential_id>/secret",
        views.CredentialSecretView.as_view(),
        name="credential-secret",
    ),
]
