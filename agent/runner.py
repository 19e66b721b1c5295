"""The agent's loops: heartbeats, long-poll leases, jobs in threads with renewals, and draining.

Threads: the main thread waits for a stop and then drains; one thread sends heartbeats; one
long-polls for leases while a job slot is free; each job runs in its own thread, with a
companion thread renewing its lease and carrying its progress.
"""

from __future__ import annotations

import logging
import random
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from agent import __version__, children, tools
from agent.client import (
    LEASE_READ_MARGIN,
    AgentClient,
    ClientError,
    InstanceSuperseded,
    LeasedJob,
    LeaseLost,
    ProtocolError,
    ServerUnavailable,
)
from agent.config import AgentConfig
from agent.credentials import parse_access, sweep_secrets
from agent.errors import JobCancelled, JobFailure
from agent.git import JobControl
from agent.logs import log_event, logger
from agent.operations import perform, sweep_leftovers
from agent.validation import InvalidJob, parse_job

EXIT_OK = 0
EXIT_REFUSED = 3
EXIT_SUPERSEDED = 4

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0
MAX_RETRY_AFTER_SECONDS = 300.0
# Renewals that fail are retried after 0.5-1 s, doubling up to the renew interval (at most 10 s).
RENEW_RETRY_BASE_SECONDS = 1.0
RENEW_RETRY_CAP_SECONDS = 10.0
RENEW_LAST_TRY_SECONDS = 1.0
RELEASE_ATTEMPTS = 3
# The reason the server records for a lease given back by a draining agent (not an attempt). A
# restarted agent's old leases are given back by the server itself, as `agent_restarted`, on the
# new instance's first call.
RELEASE_REASON = "agent_shutdown"
# Adopted orphans are reaped when SIGCHLD says one exited, and at least this often regardless.
REAP_EVERY_SECONDS = 5.0

_random = random.SystemRandom()


class Backoff:
    """Capped exponential backoff with jitter: each delay is between half and all of the step."""

    def __init__(self, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS):
        self._base, self._cap, self._failures = base, cap, 0

    def next_delay(self, retry_after: float | None = None) -> float:
        step = min(self._cap, self._base * 2**self._failures)
        self._failures += 1
        delay = step / 2 + _random.uniform(0, step / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
        return delay

    def reset(self) -> None:
        self._failures = 0


# The pause after a long poll that ended empty. Short: the server held that poll for its whole
# wait, so the fleet's polls are already spread by when each began, and while an agent pauses,
# work queued for it waits (a pause of up to 1 s put about 2 % of pickups a second late).
POLL_JITTER_SECONDS = (0.0, 0.1)


def poll_jitter() -> float:
    """A short random pause between long polls, so that agents answered at the same moment do
    not all poll again in the same instant."""
    return _random.uniform(*POLL_JITTER_SECONDS)


@dataclass
class RunningJob:
    leased: LeasedJob
    control: JobControl = field(default_factory=JobControl)
    thread: threading.Thread | None = None
    # A run of the same job under an older lease, which must be over before this one starts.
    previous: RunningJob | None = None
    # Why the run stopped without a report (`lease_lost`, `shutdown`, `aborted`), if it did.
    stopped_for: str | None = None

    @property
    def job_id(self) -> str:
        return self.leased.job_id


class Agent:
    """One running agent instance: call `run()` from the main thread, `stop()` to drain.

    With `reap_orphans` (the agent owns its process: `python -m agent`) the main thread also
    reaps the orphans the process adopts; an agent embedded in another program leaves that to it.
    """

    def __init__(
        self, config: AgentConfig, *, client: AgentClient | None = None, reap_orphans: bool = False
    ) -> None:
        self.config = config
        self._reap_orphans = reap_orphans
        self._next_reap = 0.0
        self.instance_id = str(uuid.uuid4())
        self.client = client or AgentClient(
            config.server_url, config.token, verify=config.tls_verify
        )
        self.hostname = socket.gethostname()
        self._stopping = threading.Event()  # no more leasing; drain
        self._hurry = threading.Event()  # grace period over: stop jobs now, stop retrying reports
        self._at_once = threading.Event()  # second signal or fatal answer: wait for nothing
        self._finished = threading.Event()  # drain is over: stop heartbeats
        self._exit_code = EXIT_OK
        self._changed = threading.Condition()
        self._running: dict[str, RunningJob] = {}
        self._polling = threading.Event()  # a lease call is out, the server may be holding it
        # (monotonic time, what it reported) of the last heartbeat the server answered
        self._last_heartbeat: tuple[float, tuple[list[str], dict[str, str]]] | None = None

    def stop(self) -> None:
        """Stop leasing and drain. A second call ends the grace period at once."""
        if self._stopping.is_set():
            self._hurry.set()
            self._at_once.set()
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()

    def running_job_ids(self) -> list[str]:
        with self._changed:
            return list(self._running)

    def run(self) -> int:
        """Work until stopped; return the process exit code."""
        swept = sweep_leftovers(self.config.projects_path)
        # A job folder left by an agent that died mid-job may hold a key: gone before any work.
        swept += sweep_secrets(self.config.storage_path)
        log_event(
            logging.INFO,
            "agent_started",
            version=__version__,
            instance_id=self.instance_id,
            server=self.config.server_url,
            projects_path=self.config.projects_path,
            concurrency=self.config.concurrency,
            swept=swept,
        )
        heartbeats = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        leases = threading.Thread(target=self._lease_loop, name="lease", daemon=True)
        heartbeats.start()
        leases.start()
        while not self._stopping.wait(0.5):
            self._reap()
        self._drain(leases)
        self._finished.set()
        self._reap(now=True)
        heartbeats.join(timeout=5)
        self.client.close()
        log_event(logging.INFO, "agent_stopped", exit_code=self._exit_code)
        return self._exit_code

    def _reap(self, *, now: bool = False) -> None:
        if not self._reap_orphans:
            return
        if now or children.child_exited() or time.monotonic() >= self._next_reap:
            self._next_reap = time.monotonic() + REAP_EVERY_SECONDS
            reaped = children.reap_adopted()
            if reaped:
                log_event(logging.DEBUG, "orphans_reaped", count=reaped)

    # -- stopping ---------------------------------------------------------------------------

    def _fatal(self, exit_code: int, event: str, **fields: object) -> None:
        log_event(logging.ERROR, event, **fields)
        self._exit_code = exit_code
        self._hurry.set()
        self._at_once.set()
        self.stop()

    def _drain(self, leases: threading.Thread) -> None:
        grace = 0 if self._hurry.is_set() else self.config.drain_seconds
        deadline = time.monotonic() + grace
        log_event(
            logging.INFO, "agent_draining", running_jobs=self.running_job_ids(), grace_seconds=grace
        )
        with self._changed:
            while self._running and not self._hurry.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.5))
            left_running = list(self._running.values())
        if left_running:
            # Past the grace period: stop running jobs and give up on reports still retrying.
            self._hurry.set()
        reason = "aborted" if self._exit_code != EXIT_OK else "shutdown"
        for running in left_running:
            running.control.cancel(reason)
        for running in left_running:
            if running.thread is not None:
                running.thread.join(timeout=30)
        if not self._at_once.is_set():
            # A poll still in flight may be handed a job: wait for it, so that the job is released
            # rather than left leased to an agent that is gone. Jobs stopped here are released
            # only after it has ended: released earlier, the server would hand one straight back
            # through that very poll. A poll ends within its read timeout.
            wait = max(0.0, deadline - time.monotonic())
            if left_running:
                wait = max(wait, self.config.lease_wait + LEASE_READ_MARGIN)
            leases.join(timeout=wait)
        for running in left_running:
            stopped = running.thread is None or not running.thread.is_alive()
            if running.stopped_for == "shutdown" and stopped:
                self._release(running)

    # -- heartbeats -------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while True:
            if self._heartbeat_due():
                self._send_heartbeat()
            if self._finished.wait(self.config.heartbeat_seconds):
                return

    def _heartbeat_report(self) -> tuple[list[str], dict[str, str]]:
        return sorted(self.running_job_ids()), tools.versions()

    def _heartbeat_due(self) -> bool:
        """Whether this period's heartbeat must go out.

        A lease call the server is holding already counts as a sign of life (the server notes
        presence at its start, and holds it at most `LONG_POLL_MAX_WAIT`, well inside the
        online window), so while one is outstanding the heartbeat is skipped unless what it
        reports changed or the last one is older than `heartbeat_refresh_seconds` (which keeps
        the node's free disk space current). An idle fleet then sends its server lease calls
        and little else. With every job slot busy no poll is outstanding, and heartbeats go
        out every period.
        """
        if not self._polling.is_set() or self._last_heartbeat is None:
            return True
        sent_at, report = self._last_heartbeat
        age = time.monotonic() - sent_at
        return age >= self.config.heartbeat_refresh_seconds or report != self._heartbeat_report()

    def _send_heartbeat(self) -> None:
        try:
            disk_free = shutil.disk_usage(self.config.projects_path).free
        except OSError:
            disk_free = 0
        started = time.monotonic()
        running, versions = report = self._heartbeat_report()
        try:
            self.client.heartbeat(
                instance_id=self.instance_id,
                hostname=self.hostname,
                disk_free_bytes=disk_free,
                running_jobs=running,
                tool_versions=versions,
            )
        except InstanceSuperseded as exc:
            self._fatal(EXIT_SUPERSEDED, "instance_superseded", detail=exc.message)
        except (ServerUnavailable, ProtocolError, ClientError) as exc:
            self._last_heartbeat = None  # the next period sends again
            log_event(logging.WARNING, "heartbeat_failed", error=str(exc))
        else:
            self._last_heartbeat = (started, report)

    # -- leasing ----------------------------------------------------------------------------

    def _free_slots(self) -> int:
        """Wait until a job slot is free; 0 when the agent is stopping."""
        with self._changed:
            while len(self._running) >= self.config.concurrency and not self._stopping.is_set():
                self._changed.wait(1.0)
            if self._stopping.is_set():
                return 0
            return self.config.concurrency - len(self._running)

    def _lease_loop(self) -> None:
        backoff = Backoff()
        request_id: str | None = None
        while self._free_slots():
            # One request id per logical request: kept across retries until a definite answer.
            request_id = request_id or str(uuid.uuid4())
            self._polling.set()
            try:
                leased = self.client.lease(
                    instance_id=self.instance_id,
                    request_id=request_id,
                    wait=self.config.lease_wait,
                )
            except ServerUnavailable as exc:
                delay = backoff.next_delay(exc.retry_after)
                log_event(logging.WARNING, "lease_retry", error=str(exc), retry_in=round(delay, 1))
                self._stopping.wait(delay)
                continue
            except ProtocolError as exc:
                request_id = None
                delay = backoff.next_delay()
                log_event(
                    logging.ERROR, "lease_malformed", error=str(exc), retry_in=round(delay, 1)
                )
                self._stopping.wait(delay)
                continue
            except InstanceSuperseded as exc:
                self._fatal(EXIT_SUPERSEDED, "instance_superseded", detail=exc.message)
                return
            except ClientError as exc:
                self._fatal(EXIT_REFUSED, "lease_refused", status=exc.status, error=str(exc))
                return
            finally:
                self._polling.clear()
            request_id = None
            backoff.reset()
            if leased is None:
                self._stopping.wait(poll_jitter())
                continue
            if self._stopping.is_set():
                self._release(RunningJob(leased))
                return
            self._start_job(leased)

    # -- jobs -------------------------------------------------------------------------------

    def _start_job(self, leased: LeasedJob) -> None:
        running = RunningJob(leased)
        running.thread = threading.Thread(
            target=self._work, args=(running,), name=f"job-{leased.job_id[:8]}", daemon=True
        )
        with self._changed:
            running.previous = self._running.get(leased.job_id)
            self._running[leased.job_id] = running
        if running.previous is not None:
            # The server leased the job again, so the older lease is gone: stop that run.
            running.previous.control.cancel("lease_lost")
        running.thread.start()

    def _work(self, running: RunningJob) -> None:
        try:
            if running.previous is not None and running.previous.thread is not None:
                running.previous.thread.join()
            running.previous = None
            self._run_and_report(running)
        except Exception:
            logger.exception("job_crashed")
        finally:
            with self._changed:
                if self._running.get(running.job_id) is running:
                    del self._running[running.job_id]
                self._changed.notify_all()

    def _run_and_report(self, running: RunningJob) -> None:
        leased, control = running.leased, running.control
        fields = {"job_id": leased.job_id, "attempt": leased.lease.attempt}
        try:
            job = parse_job(
                leased.job,
                allowed_schemes=self.config.git_allowed_schemes,
                allow_private_hosts=self.config.git_allow_private_hosts,
            )
            access = parse_access(leased.job)
        except InvalidJob as exc:
            log_event(logging.WARNING, "job_invalid", **fields, field=exc.field, reason=exc.reason)
            self._report(running, error=JobFailure("invalid_job", str(exc)).as_dict())
            return
        fields |= {"kind": job.kind, "target_path": job.target_path}
        log_event(logging.INFO, "job_started", **fields, project_id=job.project_id)
        done = threading.Event()
        renewer = threading.Thread(
            target=self._renew_loop,
            args=(running, done),
            name=f"renew-{job.id[:8]}",
            daemon=True,
        )
        renewer.start()
        reporter = threading.Thread(
            target=self._progress_loop,
            args=(running, done),
            name=f"progress-{job.id[:8]}",
            daemon=True,
        )
        reporter.start()
        result = error = None
        try:
            result = perform(job, self.config, control, access).as_dict()
        except JobFailure as failure:
            error = failure.as_dict()
        except JobCancelled:
            pass
        except Exception as exc:
            # Not logger.exception: a traceback's locals and messages could hold the secret.
            text = access.redact(f"{exc.__class__.__name__}: {exc}")
            log_event(logging.ERROR, "job_crashed", job_id=job.id, error=text)
            error = JobFailure("internal_error", text).as_dict()
        finally:
            done.set()
            renewer.join()
            reporter.join()
        reason = control.cancel_reason
        if reason == "lease_lost" or (result is None and error is None):
            log_event(logging.WARNING, "job_stopped", **fields, reason=reason)
            running.stopped_for = reason  # a job stopped for shutdown is released by the drain
            return
        if result is not None:
            log_event(logging.INFO, "job_finished", **fields, outcome="succeeded", **result)
        else:
            log_event(logging.WARNING, "job_finished", **fields, outcome="failed", **(error or {}))
        self._report(running, result=result, error=error)

    def _renew_loop(self, running: RunningJob, finished: threading.Event) -> None:
        """Renew every `renew_every_seconds`; ride out 5xx and dropped connections with capped,
        jittered retries until the lease's own expiry, the one thing besides a 409 (or 404)
        that stops the job."""
        lease = running.leased.lease
        interval = float(min(max(lease.renew_every_seconds, 1), 60))
        backoff = Backoff(base=RENEW_RETRY_BASE_SECONDS, cap=min(interval, RENEW_RETRY_CAP_SECONDS))
        expires = lease.deadline
        delay = interval
        while True:
            left = expires - time.monotonic()
            # A retry due after the lease ends is made just before instead, as a last chance.
            wait = (
                min(delay, left - RENEW_LAST_TRY_SECONDS) if left > RENEW_LAST_TRY_SECONDS else left
            )
            if finished.wait(max(wait, 0.0)):
                return
            left = expires - time.monotonic()
            if left <= 0:
                log_event(logging.WARNING, "job_lease_expired", job_id=running.job_id)
                running.control.cancel("lease_expired")
                return
            try:
                renewal = self.client.renew(
                    running.job_id, lease_token=lease.token,
                    progress=running.control.progress(), timeout=max(left, 1.0),
                )  # fmt: skip
                expires, delay = renewal.deadline, interval
                backoff.reset()
            except InstanceSuperseded as exc:
                running.control.cancel("lease_lost")
                self._fatal(EXIT_SUPERSEDED, "instance_superseded", detail=exc.message)
                return
            except ClientError as exc:
                if exc.status in (404, 409):
                    # 409 lease_lost, or 404 (not this node's job): the job is not ours.
                    log_event(
                        logging.WARNING, "job_lease_lost", job_id=running.job_id,
                        status=exc.status, code=exc.code,
                    )  # fmt: skip
                    running.control.cancel("lease_lost")
                    return
                delay = self._renew_failed(running, backoff, exc, expires)
            except (ServerUnavailable, ProtocolError) as exc:
                delay = self._renew_failed(running, backoff, exc, expires)

    def _progress_loop(self, running: RunningJob, finished: threading.Event) -> None:
        """Post the job's progress every `progress_seconds` while it changes, so that a long
        clone visibly moves between renewals. Best effort: a lost lease is the renewals' to
        notice, and a failed post just waits for the next."""
        lease = running.leased.lease
        sent: dict[str, Any] = {}
        interval = self.config.progress_seconds
        while not finished.wait(interval):
            current = running.control.progress()
            if not current or current == sent:
                continue
            try:
                self.client.progress(
                    running.job_id, lease_token=lease.token, progress=current, timeout=interval * 2
                )
                sent = current
            except (ClientError, ServerUnavailable, ProtocolError) as exc:
                log_event(logging.DEBUG, "progress_failed", job_id=running.job_id, error=str(exc))

    def _renew_failed(
        self, running: RunningJob, backoff: Backoff, exc: Exception, expires: float
    ) -> float:
        delay = backoff.next_delay(getattr(exc, "retry_after", None))
        log_event(
            logging.WARNING, "renew_failed", job_id=running.job_id, error=str(exc),
            retry_in=round(delay, 1), lease_left=round(expires - time.monotonic(), 1),
        )  # fmt: skip
        return delay

    def _report(
        self,
        running: RunningJob,
        *,
        result: dict[str, object] | None = None,
        error: dict[str, object] | None = None,
    ) -> None:
        """Send the completion, retrying the same body while the server is unavailable."""
        backoff = Backoff()
        token = running.leased.lease.token
        while True:
            try:
                self.client.complete(running.job_id, lease_token=token, result=result, error=error)
                log_event(logging.INFO, "job_reported", job_id=running.job_id)
                return
            except LeaseLost:
                log_event(
                    logging.WARNING, "job_report_refused", job_id=running.job_id, code="lease_lost"
                )
                return
            except ClientError as exc:
                log_event(
                    logging.ERROR, "job_report_refused", job_id=running.job_id, error=str(exc)
                )
                return
            except (ServerUnavailable, ProtocolError) as exc:
                delay = backoff.next_delay(getattr(exc, "retry_after", None))
                log_event(
                    logging.WARNING, "job_report_retry", job_id=running.job_id, error=str(exc),
                    retry_in=round(delay, 1),
                )  # fmt: skip
                if self._hurry.wait(delay):
                    log_event(logging.ERROR, "job_report_abandoned", job_id=running.job_id)
                    return

    def _release(self, running: RunningJob) -> None:
        """Give a job back to the server (agent shutting down), with a few quick retries."""
        for attempt in range(RELEASE_ATTEMPTS):
            try:
                self.client.release(
                    running.job_id, lease_token=running.leased.lease.token, reason=RELEASE_REASON
                )
                log_event(logging.INFO, "job_released", job_id=running.job_id)
                return
            except ClientError as exc:
                log_event(
                    logging.WARNING, "job_release_refused", job_id=running.job_id, error=str(exc)
                )
                return
            except (ServerUnavailable, ProtocolError) as exc:
                log_event(
                    logging.WARNING, "job_release_retry", job_id=running.job_id, error=str(exc),
                    attempt=attempt + 1,
                )  # fmt: skip
                time.sleep(1.0)
        log_event(logging.ERROR, "job_release_abandoned", job_id=running.job_id)
