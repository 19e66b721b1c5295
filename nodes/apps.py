from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "nodes"
    verbose_name = "Nodes"

    def ready(self) -> None:
        from nodes import schema  # noqa: F401 - registers the OpenAPI extension
