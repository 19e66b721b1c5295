"""The user API over HTTP: one `requests.Session`, explicit timeouts, bounded retries.

Errors come out as `Refused` (the server said no, 4xx) or `Unreachable` (no usable answer).
The token travels only in the Authorization header; it is never part of a message.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import requests

from gitfleet_cli import __version__
from gitfleet_cli.errors import Refused, Unreachable

# Statuses that mean "not handled, try again": the request had no effect.
_NOT_HANDLED = frozenset({429, 503})
# Statuses a read may retry: nothing changes by asking again.
_RETRY_READ = frozenset({500, 502, 503, 504, 429})
PAGE_SIZE = 1000


class Client:
    """A person's view of one Gitfleet server; methods return the decoded JSON answer."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        attempts: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.session = requests.Session()
        # Proxies and netrc from the environment would be a second way for the token to go
        # somewhere; the server URL is the only destination.
        self.session.trust_env = False
        self.session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": f"gitfleet-cli/{__version__}",
            }
        )

    def close(self) -> None:
        self.session.close()

    def get(
        self, path: str, *, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        return self.request("GET", path, params=params, timeout=timeout)

    def post(self, path: str, *, json: Any = None) -> Any:
        return self.request("POST", path, json=json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict]:
        """Every result of a paginated list, one page of PAGE_SIZE at a time."""
        offset = 0
        while True:
            answer = self.get(path, params={**(params or {}), "limit": PAGE_SIZE, "offset": offset})
            if isinstance(answer, list):  # a list that is not paginated
                yield from answer
                return
            results = answer.get("results", [])
            yield from results
            offset += len(results)
            if not results or offset >= answer.get("count", 0):
                return

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """Sends one request, retrying what is safe to retry; returns the JSON answer or None."""
        # One request id for every attempt, so the server's log ties the retries together.
        headers = {"X-Request-ID": uuid.uuid4().hex}
        read = method == "GET"
        last_problem = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = self.session.request(
                    method,
                    self.url + path,
                    params=params,
                    json=json,
                    headers=headers,
                    timeout=(min(10.0, timeout or self.timeout), timeout or self.timeout),
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                last_problem = _describe(exc)
                # A write may have reached the server unless the connection was never made.
                if not read and not _never_sent(exc):
                    break
            else:
                retry = response.status_code in (_RETRY_READ if read else _NOT_HANDLED)
                if not retry or attempt == self.attempts:
                    return _answer(response)
                last_problem = f"HTTP {response.status_code}"
                time.sleep(_retry_after(response, self.backoff * attempt))
                continue
            if attempt < self.attempts:
                time.sleep(self.backoff * attempt)
        raise Unreachable(f"cannot reach {self.url}: {last_problem}")


def _answer(response: requests.Response) -> Any:
    status = response.status_code
    if 200 <= status < 300:
        if status == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise Unreachable(
                f"{response.url} answered {status} with something other than JSON; "
                "is this a Gitfleet server?"
            ) from None
    if 300 <= status < 400:
        raise Refused(
            f"the server redirects to {response.headers.get('Location', '?')}; "
            "log in with the URL it names (https?)",
            status=status,
        )
    if 400 <= status < 500:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        given = body.get("fields") if isinstance(body.get("fields"), dict) else {}
        fields = {str(name): [str(r) for r in reasons] for name, reasons in given.items()}
        raise Refused(
            str(body.get("error") or response.reason or "refused"),
            status=status,
            code=str(body.get("code") or ""),
            fields=fields,
        )
    raise Unreachable(f"{response.url} answered {status} {response.reason}")


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection was refused or never made, so the server saw nothing."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    text = repr(exc)
    return "NewConnectionError" in text or "NameResolutionError" in text


def _describe(exc: requests.RequestException) -> str:
    """A short reason from a requests exception (its text names pools and objects)."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "No route to host"):
        if known in text:
            return known.lower()
    return text.rsplit(": ", 1)[-1].rstrip(")'\"") or type(exc).__name__


def _retry_after(response: requests.Response, default: float) -> float:
    """Seconds to wait before asking again: the server's Retry-After, bounded to 10 s."""
    value = response.headers.get("Retry-After", "")
    if value.isdigit():
        return min(10.0, float(value))
    return default
