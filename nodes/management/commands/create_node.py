from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from nodes.models import Node
from nodes.services import create_node, rotate_agent_token


class Command(BaseCommand):
    help = "Registers a node and prints its new agent token alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--rotate-if-exists",
            action="store_true",
            help="If the node exists, issue it a new token (revoking the old ones).",
        )

    def handle(self, *args, name: str, rotate_if_exists: bool, **options):
        existing = Node.objects.filter(name=name).first()
        if existing is not None:
            if not rotate_if_exists:
                raise CommandError(f"Node {name!r} exists; use --rotate-if-exists for a new token.")
            plaintext = rotate_agent_token(node=existing)
            self.stderr.write(f"Rotated the agent token of node {name}; it is shown only once.")
        else:
            try:
                node, plaintext = create_node(name=name)
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
            self.stderr.write(
                f"Created node {node.name} ({node.id}); its token is shown only once."
            )
        self.stdout.write(plaintext)
