from django.urls import path

from sync import views

urlpatterns = [
    path("hooks/", views.HookListView.as_view(), name="hook-list"),
    path("hooks/<uuid:hook_id>", views.HookDetailView.as_view(), name="hook-detail"),
    path(
        "hooks/<uuid:hook_id>/deliveries",
        views.HookDeliveryView.as_view(),
        name="hook-deliveries",
    ),
    path("subscriptions/", views.SubscriptionListView.as_view(), name="subscription-list"),
    path(
        "subscriptions/<uuid:subscription_id>",
        views.SubscriptionDetailView.as_view(),
        name="subscription-detail",
    ),
    path(
        "subscriptions/<uuid:subscription_id>/resume",
        views.SubscriptionResumeView.as_view(),
        name="subscription-resume",
    ),
    path(
        "subscriptions/<uuid:subscription_id>/attempts",
        views.DeliveryAttemptListView.as_view(),
        name="subscription-attempts",
    ),
]
