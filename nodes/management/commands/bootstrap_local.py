import os
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from nodes.models import Node
from nodes.services import create_node, rotate_agent_token


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")


class Command(BaseCommand):
    help = (
        "Prepares a single-machine Gitfleet: an admin user and a local node whose agent token is "
        "written to a file. Safe to run again: it reuses what exists."
    )

    def add_arguments(self, parser):
        parser.add_argument("--admin-user", default=os.environ.get("GITFLEET_ADMIN_USER", "admin"))
        parser.add_argument("--node", default="local")
        parser.add_argument("--secrets-dir", type=Path, required=True)

    def handle(self, *args, admin_user: str, node: str, secrets_dir: Path, **options):
        password_file = secrets_dir / "admin-password"
        users = get_user_model().objects
        if not users.filter(username=admin_user).exists():
            password = os.environ.get("GITFLEET_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            users.create_superuser(admin_user, email="", password=password)
            if not os.environ.get("GITFLEET_ADMIN_PASSWORD"):
                _write_secret(password_file, password)
            self.stdout.write(f"Created admin user {admin_user!r}.")
        if password_file.exists():
            self.stdout.write(f"Admin login: {admin_user} / {password_file.read_text().strip()}")
        else:
            self.stdout.write(f"Admin login: {admin_user} (password from GITFLEET_ADMIN_PASSWORD)")

        token_file = secrets_dir / f"{node}.token"
        existing = Node.objects.filter(name=node).first()
        if existing is None:
            _, token = create_node(name=node)
            _write_secret(token_file, token)
            self.stdout.write(f"Registered node {node!r}; its agent token is in {token_file}.")
        elif not token_file.exists():
            _write_secret(token_file, rotate_agent_token(node=existing))
            self.stdout.write(f"Issued node {node!r} a new agent token in {token_file}.")
        else:
            self.stdout.write(f"Node {node!r} exists; its agent token is in {token_file}.")
