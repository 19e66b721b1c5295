"""The event classes: the JSON they store is the log's, unchanged, and the catalogue in
`docs/events.md` is what they generate."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from projects import catalogue, domain

T0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
JOB = "3f2c1e9a-0d4b-4e7a-9a55-2b8f1d6c0e11"
CREDENTIAL = "6f1c6a8e-5b1e-4a43-9a59-3f0f7d0c2b11"
ERROR = {"code": "timeout", "message": "git fetch took longer than 60 s", "retryable": True}
RESULT = {
    "commit": "a" * 40,
    "branch": "main",
    "local_path": "7_demo",
    "duration_ms": 12,
    "size_bytes": 4096,
}

# Each event type as the log has stored it since the first release: type names, keys, key
# order and value forms. Existing databases and the API's event answers depend on them.
STORED = [
    (
        "ProjectCreated",
        {
            "owner_id": 7,
            "name": "demo",
            "node_id": "b1a6c0de-0000-4000-8000-000000000001",
            "git_url": "https://git.example.com/group/demo.git",
            "branch": "main",
            "depth": None,
            "target_path": "7_demo",
        },
    ),
    ("JobQueued", {"job_id": JOB, "kind": "clone", "max_attempts": 3}),
    (
        "JobLeased",
        {
            "job_id": JOB,
            "attempt": 1,
            "lease_token": "t" * 32,
            "request_id": "req-00000001",
            "instance_id": "b1a6c0de-0000-4000-8000-0000000000aa",
            "expires_at": "2026-01-01T12:01:30.123456+00:00",
        },
    ),
    ("JobLeaseRenewed", {"job_id": JOB, "expires_at": "2026-01-01T12:02:00+00:00"}),
    (
        "JobLeaseRenewed",
        {
            "job_id": JOB,
            "expires_at": "2026-01-01T12:02:00+00:00",
            "progress": {"phase": "receiving", "percent": 42},
        },
    ),
    ("JobLeaseExpired", {"job_id": JOB, "attempt": 1}),
    ("JobLeaseReleased", {"job_id": JOB, "attempt": 2, "reason": "agent_restarted"}),
    (
        "JobAttemptFailed",
        {"job_id": JOB, "attempt": 3, "error": ERROR, "retry_at": "2026-01-01T12:00:30+00:00"},
    ),
    ("JobSucceeded", {"job_id": JOB, "attempt": 4, "result": RESULT}),
    ("JobFailed", {"job_id": JOB, "attempt": 4, "error": ERROR}),
    ("JobCancelled", {"job_id": JOB, "reason": "cancelled_by_user"}),
    # Since live workspaces: a pull's strategy, a delete's force, the inspect kind, and the
    # workspace summary and backup ref in a result.
    (
        "JobQueued",
        {"job_id": JOB, "kind": "pull", "max_attempts": 3, "options": {"strategy": "rebase"}},
    ),
    ("JobQueued", {"job_id": JOB, "kind": "delete", "max_attempts": 3, "options": {"force": True}}),
    ("JobQueued", {"job_id": JOB, "kind": "inspect", "max_attempts": 3}),
    (
        "JobSucceeded",
        {
            "job_id": JOB,
            "attempt": 1,
            "result": {
                **RESULT,
                "workspace": {"dirty": {"count": 0, "paths": []}, "ahead": 0, "behind": 0},
                "backup_ref": "refs/gitfleet/backup/20260101T120000000000Z",
            },
        },
    ),
    # Added with projects that use a person's credential: the id only, never the secret.
    (
        "ProjectCreated",
        {
            "owner_id": 7,
            "name": "private",
            "node_id": "b1a6c0de-0000-4000-8000-000000000001",
            "git_url": "https://git.example.com/group/private.git",
            "branch": "main",
            "depth": None,
            "target_path": "7_private",
            "credential_id": CREDENTIAL,
        },
    ),
    ("ProjectCredentialChanged", {"credential_id": CREDENTIAL}),
    ("ProjectCredentialChanged", {"credential_id": None}),
]


def test_every_event_type_is_in_the_table_and_keeps_its_stored_name():
    assert list(domain.EVENT_TYPES) == list(dict.fromkeys(type_ for type_, _ in STORED))


@pytest.mark.parametrize(
    ("type_", "data"), STORED, ids=[f"{t}-{i}" for i, (t, _) in enumerate(STORED)]
)
def test_stored_json_reads_into_the_class_and_writes_back_byte_for_byte(type_, data):
    event = domain.event_from_data(type_, data)

    assert type(event).__name__ == type_ == event.type
    assert json.dumps(event.to_data()) == json.dumps(data)


def test_what_decide_writes_is_the_stored_form():
    """Events made by the decider, not read from the log, serialise the same way."""
    state = domain.initial_state("p")
    create = domain.CreateProject(
        owner_id=7,
        name="demo",
        node_id="b1a6c0de-0000-4000-8000-000000000001",
        git_url="https://git.example.com/group/demo.git",
        branch="main",
        depth=None,
        job_id=JOB,
        max_attempts=3,
    )
    events = domain.decide(state, create)
    state = domain.fold(state, [domain.Recorded(e, v, T0) for v, e in enumerate(events, 1)])
    leased = domain.decide(
        state,
        domain.LeaseJob(
            JOB, "t" * 32, "req-00000001", "b1a6c0de-0000-4000-8000-0000000000aa", T0, 90
        ),
    )

    assert [(e.type, e.to_data()) for e in events] == STORED[:2]
    assert leased[0].to_data() == STORED[2][1]
    assert isinstance(leased[0].expires_at, datetime)


def test_evolve_reads_typed_events_the_same_as_stored_ones():
    state = domain.initial_state("p")
    typed = [domain.event_from_data(type_, data) for type_, data in STORED[:3]]
    reread = [domain.event_from_data(e.type, json.loads(json.dumps(e.to_data()))) for e in typed]

    assert typed == reread
    as_typed = domain.fold(state, [domain.Recorded(e, v, T0) for v, e in enumerate(typed, 1)])
    as_read = domain.fold(state, [domain.Recorded(e, v, T0) for v, e in enumerate(reread, 1)])
    assert as_typed == as_read
    assert as_read.jobs[JOB].lease_expires_at == datetime.fromisoformat(STORED[2][1]["expires_at"])


def test_every_command_has_its_own_decide_function():
    commands = domain.Command.__args__
    assert set(domain._DECIDERS) == set(commands)
    assert len(set(domain._DECIDERS.values())) == len(commands)


def test_every_event_type_has_its_own_mutator():
    assert set(domain._MUTATORS) == set(domain.EVENT_TYPES.values())


def test_the_committed_catalogue_is_what_the_event_classes_generate():
    committed = catalogue.PATH.read_text(encoding="utf-8")

    assert committed == catalogue.render(), "run: python -m projects.catalogue"
    for type_ in domain.EVENT_TYPES:
        assert f"## {type_}\n" in committed


def test_the_catalogue_runs_without_django_settings(tmp_path: Path):
    """`python -m projects.catalogue --check`, as CI or a person runs it: no settings needed."""
    root = Path(catalogue.__file__).resolve().parent.parent
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-m", "projects.catalogue", "--check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr


def test_a_stale_catalogue_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    stale = tmp_path / "events.md"
    stale.write_text(catalogue.render().replace("JobLeased", "JobTaken"), encoding="utf-8")
    monkeypatch.setattr(catalogue, "PATH", stale)

    assert catalogue.main(["--check"]) == 1
    assert catalogue.main([]) == 0
    assert stale.read_text(encoding="utf-8") == catalogue.render()
