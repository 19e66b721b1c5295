from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "sync"
    verbose_name = "Sync and notifications"

    def ready(self) -> None:
        # The sweeper runs these every round in every server process; the watch channels are
        # announced by `projects.wakeups` on every append.
        from projects import sweeper, wakeups  # noqa: F401
        from sync import notify, schedule

        sweeper.register(schedule.queue_due_pulls)
        sweeper.register(notify.deliver_due)
