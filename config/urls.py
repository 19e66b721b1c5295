from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from config import health
from config.api_root import api_root
from core.errors import get_only
from projects import account
from projects.metrics import metrics as metrics_view

urlpatterns = [
    path("", RedirectView.as_view(url="/api/v1/", permanent=False)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    # Django's own login view, so the login throttle counts failures here as in the admin.
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(next_page="account", redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("account/", account.home, name="account"),
    path("account/tokens/", account.issue_token, name="account-token-issue"),
    path(
        "account/tokens/<int:token_id>/revoke",
        account.revoke_token,
        name="account-token-revoke",
    ),
    path("api/v1/", api_root, name="api-root"),
    path("api/v1/", include("projects.api.urls")),
    path("api/v1/", include("nodes.api_urls")),
    path("api/v1/", include("accounts.api_urls")),
    path("api/v1/", include("credentials.api.urls")),
    path("api/v1/", include("sync.urls")),
    path("api/v1/agent/", include("projects.agent_api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/", get_only(SpectacularSwaggerView.as_view(url_name="schema")), name="swagger-ui"
    ),
    path("api/redoc/", get_only(SpectacularRedocView.as_view(url_name="schema")), name="redoc"),
    path("api-auth/", include("rest_framework.urls")),
]

handler400 = "core.errors.bad_request"
handler404 = "core.errors.page_not_found"
handler500 = "core.errors.server_error"
