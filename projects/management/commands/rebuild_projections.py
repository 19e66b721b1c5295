import uuid

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from projects import projection


class Command(BaseCommand):
    help = (
        "Replays every project's events and compares with the stored projections. With --check "
        "it reports drift and exits non-zero; without it, it rewrites the drifted projections."
    )

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="Report drift; change nothing.")
        parser.add_argument(
            "--project", type=uuid.UUID, help="Only this project (its id); no orphan scan."
        )

    def handle(self, *args, check: bool, project: uuid.UUID | None, **options):
        projects = drifted = 0
        replayed_projects = (
            [projection.replay_one(str(project))] if project else projection.replay_all()
        )
        for replayed, drifts in projection.diffs(replayed_projects):
            projects += 1
            if not drifts:
                continue
            drifted += 1
            for drift in drifts:
                self.stdout.write(f"drift: {drift}")
            if not check:
                with transaction.atomic():
                    projection.repair(replayed)
        for orphan in [] if project else projection.orphans():
            drifted += 1
            self.stdout.write(f"drift: {orphan} (no events)")
        verb = "drifted" if check else "repaired"
        self.stdout.write(f"{projects} project(s) replayed, {drifted} {verb}.")
        if check and drifted:
            raise CommandError(f"{drifted} project projection(s) differ from the event log.")
