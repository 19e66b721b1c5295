"""One log line per event, as `key=value` text or as one JSON object (AGENT_LOG_FORMAT)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

LOGGER_NAME = "gitfleet.agent"

logger = logging.getLogger(LOGGER_NAME)


def log_event(level: int, event: str, /, **fields: Any) -> None:
    """Log `event` (a short snake_case name) with structured fields."""
    logger.log(level, event, extra={"fields": fields})


class _EventFormatter(logging.Formatter):
    def __init__(self, *, as_json: bool) -> None:
        super().__init__()
        self._as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", {}))
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        level = record.levelname.lower()
        event = record.getMessage()
        if self._as_json:
            return json.dumps({"ts": ts, "level": level, "event": event, **fields}, default=str)
        parts = [ts, level.upper(), event]
        parts += [f"{key}={_text_value(value)}" for key, value in fields.items()]
        return " ".join(parts)


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or any(ch.isspace() or ch in '"=' for ch in text):
        return json.dumps(text)
    return text


def configure_logging(log_format: str, *, stream: Any = None) -> None:
    """Send the agent's events to stderr (or `stream`), one line each."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_EventFormatter(as_json=log_format == "json"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
