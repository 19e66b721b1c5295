from django.urls import path

from nodes import api

urlpatterns = [
    path("nodes/", api.NodeListView.as_view(), name="node-list"),
    path("nodes/<uuid:node_id>", api.NodeDetailView.as_view(), name="node-detail"),
]
