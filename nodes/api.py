"""The node listing people see: which nodes exist and whether they take work now."""

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers

from core.schema import errors
from nodes.models import Node


class NodeSerializer(serializers.ModelSerializer):
    online = serializers.BooleanField(source="is_online", read_only=True)
    accepts_work = serializers.BooleanField(read_only=True)
    duplicate_instance = serializers.BooleanField(
        read_only=True, help_text="Two live agents are using this node's token."
    )

    class Meta:
        model = Node
        fields = [
            "id",
            "name",
            "enabled",
            "online",
            "accepts_work",
            "last_seen_at",
            "agent_version",
            "git_version",
            "git_lfs_version",
            "hostname",
            "disk_free_bytes",
            "running_jobs",
            "duplicate_instance",
        ]
        read_only_fields = fields


@extend_schema(responses={200: NodeSerializer, **errors(body=False)})
class NodeListView(generics.ListAPIView):
    queryset = Node.objects.all()
    serializer_class = NodeSerializer


@extend_schema(responses={200: NodeSerializer, **errors(404, body=False)})
class NodeDetailView(generics.RetrieveAPIView):
    queryset = Node.objects.all()
    serializer_class = NodeSerializer
    lookup_url_kwarg = "node_id"
