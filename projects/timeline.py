"""A project's events as people read them: who did it and one line saying what happened.

Used by the admin's timeline; the data itself stays available, redacted by
`projects.redaction`. Event types the catalogue may gain later still get a line (their name),
so an unknown type never breaks a page.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.utils.dateparse import parse_datetime

from nodes.models import Node
from projects.models import Event, Job

Summariser = Callable[[dict[str, Any], str], str]


def first_line(text: object, limit: int = 160) -> str:
    """The first non-empty line of a message, cut at `limit` characters."""
    line = next((part.strip() for part in str(text or "").splitlines() if part.strip()), "")
    return line if len(line) <= limit else f"{line[: limit - 1]}…"


def _field(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return "?" if value is None else str(value)


def _time(value: object) -> str:
    parsed = parse_datetime(value) if isinstance(value, str) else None
    return parsed.strftime("%H:%M:%S") if parsed else "?"


def _error(data: Mapping[str, Any]) -> str:
    error = data.get("error") or {}
    return f"{error.get('code') or 'error'}: {first_line(error.get('message'))}"


def _size(size: object) -> str:
    if not isinstance(size, int):
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def progress_text(progress: Mapping[str, Any] | None) -> str:
    """Reported progress as words ("receiving 42%, 1200 objects"), or "" when none was sent."""
    if not progress:
        return ""
    parts = [str(progress.get("phase") or "working")]
    if isinstance(progress.get("percent"), int | float):
        parts[0] += f" {progress['percent']:.0f}%"
    if isinstance(progress.get("objects"), int):
        parts.append(f"{progress['objects']} objects")
    if isinstance(progress.get("bytes"), int):
        parts.append(_size(progress["bytes"]))
    return ", ".join(parts)


def _created(data: dict[str, Any], kind: str) -> str:
    depth = f", depth {data['depth']}" if data.get("depth") else ""
    return (
        f"Project {data.get('name')} created from {data.get('git_url')} "
        f"(branch {data.get('branch')}{depth}) into {data.get('target_path')}"
    )


def _succeeded(data: dict[str, Any], kind: str) -> str:
    result = data.get("result") or {}
    commit = str(result.get("commit") or "")[:12]
    took = result.get("duration_ms")
    seconds = f" in {took / 1000:.1f} s" if isinstance(took, int | float) else ""
    size = f", {_size(result.get('size_bytes'))}" if result.get("size_bytes") is not None else ""
    return (
        f"{kind} succeeded: commit {commit or '?'} on {result.get('branch') or '?'}{seconds}{size}"
    )


def _renewed(data: dict[str, Any], kind: str) -> str:
    progress = progress_text(data.get("progress"))
    return f"{kind} lease renewed until {_time(data.get('expires_at'))}" + (
        f"; {progress}" if progress else ""
    )


_SUMMARIES: dict[str, Summariser] = {
    "ProjectCreated": _created,
    "JobQueued": lambda d, kind: (
        f"{d.get('kind') or kind} job queued (up to {_field(d, 'max_attempts')} attempts)"
    ),
    "JobLeased": lambda d, kind: (
        f"{kind} attempt {_field(d, 'attempt')} started by the node's agent, "
        f"lease until {_time(d.get('expires_at'))}"
    ),
    "JobLeaseRenewed": _renewed,
    "JobLeaseExpired": lambda d, kind: (
        f"{kind} attempt {_field(d, 'attempt')}: lease expired without word from the agent"
    ),
    "JobLeaseReleased": lambda d, kind: (
        f"{kind} attempt {_field(d, 'attempt')} released "
        f"({d.get('reason') or 'no reason given'}); back in the queue"
    ),
    "JobAttemptFailed": lambda d, kind: (
        f"{kind} attempt {_field(d, 'attempt')} failed, "
        f"tried again at {_time(d.get('retry_at'))}: {_error(d)}"
    ),
    "JobSucceeded": _succeeded,
    "JobFailed": lambda d, kind: (
        f"{kind} failed for good after attempt {_field(d, 'attempt')}: {_error(d)}"
    ),
    "JobCancelled": lambda d, kind: f"{kind} job cancelled ({d.get('reason') or 'no reason'})",
}


def summary(event_type: str, data: dict[str, Any] | None, job_kind: str = "job") -> str:
    """One line saying what the event means; the type's name for a type without a summary."""
    summarise = _SUMMARIES.get(event_type)
    if summarise is None:
        return event_type
    try:
        return summarise(data or {}, job_kind)
    except (TypeError, ValueError, AttributeError):
        # A line is a courtesy; an event of an older shape still shows with its data below.
        return event_type


@dataclass(frozen=True)
class TimelineRow:
    event: Event
    who: str
    summary: str
    error_message: str
    """The whole error message of a failure, line breaks kept, or ""."""


def rows(events: Iterable[Event], jobs: Iterable[Job]) -> list[TimelineRow]:
    """The events as timeline rows, naming people and nodes with two queries in all."""
    events = list(events)
    kinds = {str(job.pk): job.kind for job in jobs}
    user_ids = {e.meta.get("user_id") for e in events if e.meta and e.meta.get("user_id")}
    node_ids = {e.meta.get("node_id") for e in events if e.meta and e.meta.get("node_id")}
    users = {
        user.pk: user.get_username()
        for user in get_user_model().objects.filter(pk__in=[u for u in user_ids if _is_id(u)])
    }
    nodes = {str(node.pk): node.name for node in Node.objects.filter(pk__in=_uuids(node_ids))}
    return [
        TimelineRow(
            event=event,
            who=_who(event.meta or {}, users, nodes),
            summary=summary(
                event.type, event.data, kinds.get(str(event.data.get("job_id")), "job")
            ),
            error_message=str(((event.data or {}).get("error") or {}).get("message") or ""),
        )
        for event in events
    ]


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _uuids(values: Iterable[object]) -> list[str]:
    out = []
    for value in values:
        try:
            out.append(str(uuid.UUID(str(value))))
        except ValueError:
            continue
    return out


def _who(meta: Mapping[str, Any], users: Mapping[int, str], nodes: Mapping[str, str]) -> str:
    if meta.get("user_id") is not None:
        return users.get(meta["user_id"], f"user #{meta['user_id']}")
    if meta.get("node_id"):
        return f"node {nodes.get(str(meta['node_id']), meta['node_id'])}"
    if meta.get("system"):
        return f"server ({str(meta['system']).replace('_', ' ')})"
    return "-"
