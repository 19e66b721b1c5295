from collections import Counter

from django.db import migrations, models

# Stored names of the events whose error may be a timeout; fixed here as they are in the log.
_FAILURE_EVENTS = ("JobAttemptFailed", "JobFailed")


def count_timeouts(apps, schema_editor):
    """Fills the new column from the log, so that the projection equals a replay at once."""
    Event = apps.get_model("projects", "Event")
    Job = apps.get_model("projects", "Job")
    failures = Event.objects.filter(type__in=_FAILURE_EVENTS, data__error__code="timeout")
    counts = Counter(failures.values_list("data__job_id", flat=True))
    for job_id, count in counts.items():
        Job.objects.filter(pk=job_id).update(timeouts=count)


class Migration(migrations.Migration):
    dependencies = [("projects", "0003_job_claim_in_queue_order")]

    operations = [
        migrations.AddField(
            model_name="job",
            name="timeouts",
            field=models.PositiveIntegerField(
                default=0,
                help_text="Failed attempts that ran out of time; only the first is retried.",
            ),
        ),
        migrations.RunPython(count_timeouts, migrations.RunPython.noop),
    ]
