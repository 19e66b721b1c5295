"""The server's JSON log lines (`LOG_FORMAT=json`): one object per record, for log collectors."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Attributes every record has; anything else on a record came from `extra=`. uvicorn adds
# `color_message`, its message again with terminal colour codes.
_STANDARD_RECORD = logging.LogRecord("", logging.INFO, "", 0, "", None, None)
_RECORD_ATTRIBUTES = frozenset(vars(_STANDARD_RECORD)) | {"message", "asctime", "color_message"}
_JSON_SCALARS = (str, int, float, bool, type(None))


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", ...}` on one line.

    Fields given with `extra=` are added when they are plain values (text, numbers, booleans,
    null); objects such as the `request` Django attaches to its own records are left out, so
    nothing reaches the log that the caller did not choose to put there.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if (
                key not in _RECORD_ATTRIBUTES
                and key not in line
                and isinstance(value, _JSON_SCALARS)
            ):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)
