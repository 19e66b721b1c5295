from django.core.management.base import BaseCommand

from projects.leases import sweep


class Command(BaseCommand):
    help = (
        "Expires lapsed leases and queued jobs that waited too long for an offline node. Server "
        "processes already do this while agents poll; run it from cron if no agent may poll."
    )

    def handle(self, *args, **options):
        done = sweep()
        self.stdout.write(
            f"{done['leases_expired']} lease(s) expired, {done['queued_expired']} queued job(s) "
            "expired."
        )
