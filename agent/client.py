"""The control plane's agent API (docs/agent-protocol.md) as a small typed client.

One `requests.Session`, explicit timeouts on every call, TLS checked against AGENT_CA_BUNDLE
(or the system CAs), proxies taken from the environment. Each method is one protocol verb.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.auth import AuthBase

from agent import __version__
from agent.validation import validate_uuid

API_PREFIX = "/api/v1/agent"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
LEASE_READ_MARGIN = 15.0
# The Date header counts whole seconds: the server's clock may be up to this much past it.
DATE_RESOLUTION = 1.0


class AgentApiError(Exception):
    """Base class of everything the client raises."""


class ServerUnavailable(AgentApiError):
    """No answer, a 5xx or a 429: try again later with the same request."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProtocolError(AgentApiError):
    """The server answered 2xx with something the protocol does not allow."""


class ClientError(AgentApiError):
    """The server refused the request (4xx); sending it again as-is will not help."""

    def __init__(
        self, status: int, code: str, message: str, fields: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = dict(fields or {})


class LeaseLost(ClientError):
    """409 lease_lost: the job is no longer this agent's; stop it and do not report it."""


class InstanceSuperseded(ClientError):
    """409 instance_superseded: another process of this node took over; stop and exit."""


@dataclass(frozen=True)
class Lease:
    """A granted lease; `deadline` is `expires_at` on this process's `time.monotonic()` clock."""

    token: str
    attempt: int
    expires_at: str
    renew_every_seconds: int
    # Not part of the lease's identity: the same lease answered twice has two local readings.
    deadline: float = field(compare=False)


@dataclass(frozen=True)
class Renewal:
    """A renew answer: the lease's new expiry, and as a `time.monotonic()` deadline."""

    expires_at: str
    deadline: float


@dataclass(frozen=True)
class LeasedJob:
    """A lease answer: the job as sent (validate it with `parse_job`) and its lease."""

    job_id: str
    # Out of the repr: the job may carry its credential's secret.
    job: Mapping[str, Any] = field(repr=False)
    lease: Lease


class _BearerAuth(AuthBase):
    # Set as session.auth so that requests never swaps in credentials from ~/.netrc.
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


class AgentClient:
    """Calls the agent API of one control plane with one agent token."""

    def __init__(
        self,
        server_url: str,
        token: str,
        *,
        verify: str | bool = True,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self._base = server_url.rstrip("/") + API_PREFIX
        self._verify = verify
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._session = requests.Session()
        self._session.auth = _BearerAuth(token)
        self._session.headers["User-Agent"] = f"gitfleet-agent/{__version__}"

    def close(self) -> None:
        self._session.close()

    def heartbeat(
        self,
        *,
        instance_id: str,
        hostname: str,
        disk_free_bytes: int,
        running_jobs: Sequence[str],
        agent_version: str = __version__,
        tool_versions: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Say this instance is alive; returns the server's timing hints. `tool_versions`
        carries `git_version` and `git_lfs_version`."""
        body = {
            "instance_id": instance_id,
            "agent_version": agent_version,
            "hostname": hostname,
            "disk_free_bytes": disk_free_bytes,
            "running_jobs": list(running_jobs),
            **(tool_versions or {}),
        }
        return self._post("/heartbeat", body) or {}

    def lease(self, *, instance_id: str, request_id: str, wait: int) -> LeasedJob | None:
        """Long-poll for the next job: a LeasedJob, or None when the wait ended empty (204).

        After ServerUnavailable call again with the same `request_id`: a lease that was
        granted but whose answer was lost comes back instead of a second one.
        """
        body = {"instance_id": instance_id, "request_id": request_id, "wait": wait}
        exchange = self._send("/lease", body, read_timeout=wait + LEASE_READ_MARGIN)
        answer = exchange.data
        if answer is None:
            return None
        try:
            job, lease = answer["job"], answer["lease"]
            job_id = validate_uuid(job["id"])
            token = lease["token"]
            if not isinstance(token, str) or not token or not token.isprintable():
                raise ValueError("lease.token must be a printable string")
            return LeasedJob(
                job_id=job_id,
                job=job,
                lease=Lease(
                    token=token,
                    attempt=int(lease.get("attempt") or 1),
                    expires_at=str(lease["expires_at"]),
                    renew_every_seconds=int(lease.get("renew_every_seconds") or 20),
                    deadline=exchange.deadline(lease["expires_at"]),
                ),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(f"malformed lease answer: {exc!r}") from None

    def renew(
        self,
        job_id: str,
        *,
        lease_token: str,
        progress: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Renewal:
        """Extend the lease of a running job, carrying its progress. LeaseLost: stop the job.

        `timeout` bounds the whole call (connect and read), e.g. to what is left of the lease.
        """
        body: dict[str, Any] = {"lease_token": lease_token}
        if progress:
            body["progress"] = dict(progress)
        exchange = self._send(f"/jobs/{validate_uuid(job_id)}/renew", body, timeout=timeout)
        try:
            expires_at = (exchange.data or {})["expires_at"]
            return Renewal(expires_at=str(expires_at), deadline=exchange.deadline(expires_at))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed renew answer: {exc!r}") from None

    def progress(
        self,
        job_id: str,
        *,
        lease_token: str,
        progress: Mapping[str, Any],
        timeout: float | None = None,
    ) -> None:
        """Post a running job's latest progress (kept by the server outside the event log)."""
        body = {"lease_token": lease_token, "progress": dict(progress)}
        self._send(f"/jobs/{validate_uuid(job_id)}/progress", body, timeout=timeout)

    def complete(
        self,
        job_id: str,
        *,
        lease_token: str,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Report success (`result`) or failure (`error`). Idempotent: resend the same body."""
        if (result is None) == (error is None):
            raise ValueError("give exactly one of result or error")
        body: dict[str, Any] = {"lease_token": lease_token}
        if result is not None:
            body.update(outcome="succeeded", result=dict(result))
        else:
            body.update(outcome="failed", error=dict(error or {}))
        return self._post(f"/jobs/{validate_uuid(job_id)}/complete", body) or {}

    def release(
        self, job_id: str, *, lease_token: str, reason: str = "agent_shutdown"
    ) -> dict[str, Any]:
        """Give a running job back without spending an attempt."""
        body = {"lease_token": lease_token, "reason": reason}
        return self._post(f"/jobs/{validate_uuid(job_id)}/release", body) or {}

    def _post(
        self, path: str, body: Mapping[str, Any], *, read_timeout: float | None = None
    ) -> dict[str, Any] | None:
        return self._send(path, body, read_timeout=read_timeout).data

    def _send(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        read_timeout: float | None = None,
        timeout: float | None = None,
    ) -> _Exchange:
        connect, read = self._connect_timeout, read_timeout or self._read_timeout
        if timeout is not None:
            connect, read = min(connect, timeout), min(read, timeout)
        sent = time.monotonic()
        try:
            response = self._session.post(
                self._base + path,
                json=body,
                timeout=(connect, read),
                verify=self._verify,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise ServerUnavailable(f"POST {path}: {exc.__class__.__name__}: {exc}") from None
        return _Exchange(_answer(path, response), sent, response.headers.get("Date"))


@dataclass(frozen=True)
class _Exchange:
    """One answered call: its JSON, when it was sent (monotonic) and the server's Date header."""

    data: dict[str, Any] | None
    sent: float
    server_date: str | None

    def deadline(self, expires_at: object) -> float:
        """`expires_at` (ISO 8601 with a zone) on the local monotonic clock, measured against the
        server's own clock (its Date header), so that a skewed local clock does not shift it;
        counted from when the request was sent, so that it errs early."""
        if not isinstance(expires_at, str):
            raise TypeError("expires_at must be a string")
        expires = datetime.fromisoformat(expires_at)
        if expires.tzinfo is None:
            raise ValueError("expires_at has no time zone")
        return self.sent + (expires - self._server_now()).total_seconds()

    def _server_now(self) -> datetime:
        try:
            date = parsedate_to_datetime(self.server_date or "")
        except (TypeError, ValueError):
            return datetime.now(UTC)
        if date.tzinfo is None:
            date = date.replace(tzinfo=UTC)
        return date + timedelta(seconds=DATE_RESOLUTION)


def _answer(path: str, response: requests.Response) -> dict[str, Any] | None:
    status = response.status_code
    if status == 204:
        return None
    if 200 <= status < 300:
        try:
            data = response.json()
        except ValueError:
            raise ProtocolError(f"POST {path}: {status} without a JSON body") from None
        if not isinstance(data, dict):
            raise ProtocolError(f"POST {path}: {status} body is not a JSON object")
        return data
    if status == 429 or status >= 500:
        raise ServerUnavailable(
            f"POST {path}: {status}", retry_after=_retry_after(response.headers)
        )
    code, message, fields = _error_body(response)
    if status == 409 and code == "lease_lost":
        raise LeaseLost(status, code, message, fields)
    if status == 409 and code == "instance_superseded":
        raise InstanceSuperseded(status, code, message, fields)
    raise ClientError(status, code, message, fields)


def _error_body(response: requests.Response) -> tuple[str, str, Mapping[str, Any]]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return "", response.reason or "", {}
    fields = data.get("fields")
    return (
        str(data.get("code") or ""),
        str(data.get("error") or response.reason or ""),
        fields if isinstance(fields, dict) else {},
    )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After", "")
    return float(value) if value.strip().isdigit() else None
