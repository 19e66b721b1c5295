"""The event catalogue, `docs/events.md`, generated from the event classes in `projects.domain`.

`python -m projects.catalogue` rewrites the file; `python -m projects.catalogue --check` exits 1
when the committed file differs from what the classes say. No database or settings are needed.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from projects import domain

PATH = Path(__file__).resolve().parent.parent / "docs" / "events.md"

# JSON types of the annotations the event classes use (annotations are strings here).
_JSON_TYPES = {
    "str": "string",
    "str | None": "string or null",
    "int": "integer",
    "int | None": "integer or null",
    "bool": "boolean",
    "tuple[str, ...]": "array of strings",
    "datetime": "string, an ISO 8601 time with its offset",
    "JobKind": " or ".join(f"`{kind.value}`" for kind in domain.JobKind),
    "dict[str, Any]": "object",
    "dict[str, Any] | None": "object",
}

_INTRO = """\
# Event catalogue

Generated from the event classes in `projects/domain.py` by `python -m projects.catalogue`;
`tests/server/test_event_catalogue.py` fails when this file differs from them, so edit the
classes, not this file.

Each event belongs to one project's stream and is stored as its `type` and its fields as the
JSON object `data`. `meta` says who caused it: `user_id`, or `node_id` for agent calls, or
`system` for sweeps; plus `request_id` where there was one. "Wakes long polls" says whether the
project's node may have a job to lease after the event, so that its waiting lease calls are
woken.

Project status: `pending` (clone queued or running) → `ready` | `failed`; `deleting` →
`deleted`. Job state: `queued → leased → succeeded | failed | cancelled`.
"""


def _paragraph(text: str) -> str:
    return " ".join(line.strip() for line in text.split("\n") if line.strip())


def render() -> str:
    """The catalogue as Markdown."""
    parts = [_INTRO, "| type | fields |", "|---|---|"]
    for name, event_type in domain.EVENT_TYPES.items():
        names = ", ".join(f.name for f in fields(event_type))
        parts.append(f"| [`{name}`](#{name.lower()}) | `{names}` |")
    for name, event_type in domain.EVENT_TYPES.items():
        parts += [
            "",
            f"## {name}",
            "",
            _paragraph(inspect.getdoc(event_type) or ""),
            "",
            f"Wakes long polls: {'yes' if event_type.frees_work else 'no'}.",
            "",
            "| field | JSON type |",
            "|---|---|",
        ]
        for field in fields(event_type):
            json_type = _JSON_TYPES[str(field.type)]
            if field.default is not MISSING:
                json_type += ", left out when there is none"
            parts.append(f"| `{field.name}` | {json_type} |")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if PATH.read_text(encoding="utf-8") != text:
            print(f"{PATH} is stale: run 'python -m projects.catalogue'", file=sys.stderr)
            return 1
        return 0
    PATH.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
