"""What can go wrong, as exceptions that carry the exit code the command ends with."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    JOB_FAILED = 1
    USAGE = 2
    REFUSED = 3
    UNREACHABLE = 4
    STILL_RUNNING = 5


class CliError(Exception):
    """A failure the command reports in one message and turns into its exit code."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_json(self) -> dict[str, Any]:
        """The error as `--json` prints it."""
        return {"error": self.message, "exit_code": int(self.exit_code)}


class UsageError(CliError):
    """The command line itself is wrong or incomplete (no login, an ambiguous name)."""

    exit_code = ExitCode.USAGE


class Refused(CliError):
    """The server answered 4xx; carries its JSON error (`error`, `code`, `fields`)."""

    exit_code = ExitCode.REFUSED

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str = "",
        fields: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.fields = fields or {}

    def __str__(self) -> str:
        head = f"refused ({self.status}{' ' + self.code if self.code else ''})"
        if not self.fields:
            return f"{head}: {self.message}"
        # The server's message repeats the field reasons; one line per field reads better.
        lines = [f"{head}:"]
        for name, reasons in self.fields.items():
            lines.extend(f"  {name}: {reason}" for reason in reasons)
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "error": self.message,
            "status": self.status,
            "code": self.code,
            "fields": self.fields,
            "exit_code": int(self.exit_code),
        }


class Unreachable(CliError):
    """No answer from the server: connection error, timeout, or 5xx after retries."""

    exit_code = ExitCode.UNREACHABLE


class StillRunning(CliError):
    """`--timeout` ran out while the job was still queued or running."""

    exit_code = ExitCode.STILL_RUNNING
