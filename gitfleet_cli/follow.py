"""Following one job of a project until it ends, fed by the project's events.

Changes arrive through the watch API (`GET .../events?after=<version>&wait=<seconds>`, a held
request) when the server has it. A server without it either refuses the parameters (400) or
ignores them and answers the timeline from the start; either answer is recognised and the
follower then polls `/status` every second and reads only the events after what it has seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from gitfleet_cli.client import PAGE_SIZE, Client
from gitfleet_cli.errors import Refused, StillRunning

FINAL_EVENTS = {"JobSucceeded": "succeeded", "JobFailed": "failed", "JobCancelled": "cancelled"}
WATCH_WAIT_SECONDS = 20
POLL_SECONDS = 1.0


@dataclass
class JobView:
    """What the events say about one job so far."""

    id: str
    kind: str = ""
    state: str = "queued"
    attempt: int = 0
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    retry_at: str = ""

    @property
    def is_open(self) -> bool:
        return self.state in ("queued", "leased")

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "attempt": self.attempt,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
        }


class Timeline:
    """Folds a project's events into the jobs they describe, in version order."""

    def __init__(self) -> None:
        self.version = 0
        self.jobs: dict[str, JobView] = {}
        self.last_job_id = ""

    def apply(self, event: dict[str, Any]) -> JobView | None:
        """Takes one event (ignoring one already seen); returns the job it changed, if any."""
        if event.get("version", 0) <= self.version:
            return None
        self.version = event["version"]
        data = event.get("data") or {}
        job_id = data.get("job_id")
        if not job_id:
            return None
        job = self.jobs.setdefault(job_id, JobView(id=job_id))
        kind = event.get("type", "")
        if kind == "JobQueued":
            job.kind = data.get("kind", "")
            job.state = "queued"
            self.last_job_id = job_id
        elif kind == "JobLeased":
            job.state, job.attempt, job.progress = "leased", data.get("attempt", job.attempt), {}
        elif kind == "JobLeaseRenewed":
            job.progress = data.get("progress") or job.progress
        elif kind in ("JobLeaseExpired", "JobLeaseReleased"):
            job.state = "queued"
        elif kind == "JobAttemptFailed":
            job.state, job.error, job.retry_at = (
                "queued",
                data.get("error"),
                data.get("retry_at", ""),
            )
        elif kind in FINAL_EVENTS:
            job.state = FINAL_EVENTS[kind]
            job.result = data.get("result")
            job.error = data.get("error") or (
                {"code": "cancelled", "message": data.get("reason", "")}
                if kind == "JobCancelled"
                else None
            )
        return job


class Display(Protocol):
    def update(self, job: JobView, event_type: str) -> None: ...

    def finish(self, job: JobView) -> None: ...


class Follower:
    """Reads a project's events and waits for one job to end, within a time limit."""

    def __init__(
        self,
        client: Client,
        project_id: str,
        *,
        timeout: float,
        display: Display | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.project_id = project_id
        self.timeout = timeout
        self.display = display
        self.sleep = sleep
        self.timeline = Timeline()
        self.watch_supported: bool | None = None  # unknown until the server has answered

    @property
    def _events_path(self) -> str:
        return f"/api/v1/projects/{self.project_id}/events"

    def history(self) -> Timeline:
        """Reads every event so far into the timeline."""
        for event in self.client.pages(self._events_path):
            self.timeline.apply(event)
        return self.timeline

    def until_done(self, job_id: str) -> JobView:
        """Waits for job `job_id` to end and returns it; StillRunning when time runs out."""
        deadline = time.monotonic() + self.timeout
        job = self.timeline.jobs.setdefault(job_id, JobView(id=job_id))
        while job.is_open:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StillRunning(
                    f"{job.kind or 'job'} {job_id} is still {job.state} after {self.timeout:g} s; "
                    f"`gitfleet watch {self.project_id}` follows it again"
                )
            for event in self._next_events(remaining):
                changed = self.timeline.apply(event)
                if changed is not None and changed.id == job_id and self.display:
                    self.display.update(changed, event.get("type", ""))
        if self.display:
            self.display.finish(job)
        return job

    def _next_events(self, remaining: float) -> list[dict[str, Any]]:
        if self.watch_supported is not False:
            wait = max(1, min(WATCH_WAIT_SECONDS, int(remaining)))
            started = time.monotonic()
            try:
                answer = self.client.get(
                    self._events_path,
                    params={"after": self.timeline.version, "wait": wait, "limit": PAGE_SIZE},
                    timeout=wait + 15,
                )
            except Refused as exc:
                if exc.status != 400:
                    raise
                self.watch_supported = False  # the parameters are refused: no watch API
            else:
                events = answer.get("results", []) if isinstance(answer, dict) else answer
                if any(e.get("version", 0) <= self.timeline.version for e in events):
                    # `after` was ignored: the server answered the timeline from the start.
                    self.watch_supported = False
                else:
                    self.watch_supported = True
                    if not events and time.monotonic() - started < POLL_SECONDS:
                        self.sleep(POLL_SECONDS)  # answered at once with nothing: do not spin
                    return events
        self.sleep(min(POLL_SECONDS, remaining))
        status = self.client.get(f"/api/v1/projects/{self.project_id}/status")
        if status.get("version", 0) <= self.timeline.version:
            return []
        # Versions run 1, 2, 3 … within a project, so the offset of the next one is the
        # version already seen.
        events = []
        offset = self.timeline.version
        while True:
            page = self.client.get(self._events_path, params={"offset": offset, "limit": PAGE_SIZE})
            results = page.get("results", []) if isinstance(page, dict) else page
            events.extend(results)
            offset += len(results)
            if not results or not isinstance(page, dict) or offset >= page.get("count", 0):
                return events


BAR_WIDTH = 30


class ProgressDisplay:
    """Shows a job's progress: a bar redrawn in place on a terminal, plain lines otherwise."""

    def __init__(self, stream: TextIO, *, label: str, tty: bool | None = None) -> None:
        self.stream = stream
        self.label = label
        self.tty = stream.isatty() if tty is None else tty
        self._last_line = ""
        self._bar_shown = False

    def update(self, job: JobView, event_type: str) -> None:
        if event_type == "JobLeaseRenewed" and job.progress:
            self._progress(job)
            return
        line = _state_line(self.label, job, event_type)
        if line:
            self.line(line)

    def finish(self, job: JobView) -> None:
        if self._bar_shown and self.tty:
            self.stream.write("\n")
            self._bar_shown = False
        self.stream.flush()

    def _progress(self, job: JobView) -> None:
        progress = job.progress
        percent = progress.get("percent")
        phase = str(progress.get("phase", "working"))
        if self.tty:
            filled = int(BAR_WIDTH * (percent or 0) / 100)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            shown = f"{percent:3d}%" if isinstance(percent, int) else " ...".rjust(4)
            text = f"{self.label}: [{bar}] {shown} {phase}{_amounts(progress)}"
            self.stream.write("\r\x1b[K" + text)
            self.stream.flush()
            self._bar_shown = True
            return
        # Plain output: one line per phase and per tenth done, not one per renewal.
        step = f"{phase} {(percent or 0) // 10}"
        if step != self._last_line:
            self._last_line = step
            shown = f" {percent}%" if isinstance(percent, int) else ""
            self.line(f"{self.label}: {phase}{shown}{_amounts(progress)}")

    def line(self, text: str) -> None:
        """Prints one line, below the bar if one is shown."""
        if self._bar_shown and self.tty:
            self.stream.write("\r\x1b[K")
            self._bar_shown = False
        self.stream.write(text + "\n")
        self.stream.flush()


def _state_line(label: str, job: JobView, event_type: str) -> str:
    if event_type == "JobQueued":
        return f"{label}: queued"
    if event_type == "JobLeased":
        return f"{label}: running (attempt {job.attempt})"
    if event_type == "JobLeaseExpired":
        return f"{label}: the node stopped reporting; queued again"
    if event_type == "JobLeaseReleased":
        return f"{label}: handed back by the node; queued again"
    if event_type == "JobAttemptFailed":
        return f"{label}: attempt {job.attempt} failed ({describe_error(job.error)}); retry at {job.retry_at}"
    if event_type in FINAL_EVENTS:
        return f"{label}: {outcome_line(job)}"
    return ""


def outcome_line(job: JobView) -> str:
    """One line saying how a finished job ended."""
    if job.state == "succeeded":
        result = job.result or {}
        commit = str(result.get("commit", ""))[:12]
        where = f" at {commit}" if commit else ""
        branch = f" on {result['branch']}" if result.get("branch") else ""
        return f"succeeded{where}{branch}"
    return f"{job.state}: {describe_error(job.error)}"


def describe_error(error: dict[str, Any] | None) -> str:
    if not error:
        return "no reason given"
    code, message = error.get("code", ""), error.get("message", "")
    return f"{code}: {message}" if code and message else str(code or message)


def _amounts(progress: dict[str, Any]) -> str:
    parts = []
    if isinstance(progress.get("objects"), int):
        parts.append(f"{progress['objects']} objects")
    if isinstance(progress.get("bytes"), int):
        parts.append(human_bytes(progress["bytes"]))
    return f" ({', '.join(parts)})" if parts else ""


def human_bytes(count: int) -> str:
    """`1536` → `1.5 KiB`."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"
