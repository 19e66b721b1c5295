"""What people may read of an event: the same for the API, the staff feed and the admin.

The stored event keeps everything, since the lease protocol needs it. A lease token fences an
agent's reports, so whoever reads it could report for the agent: it is shown masked. An agent
instance id is how the server tells a restarted agent from a second one sharing the token;
whoever knows it could hide a second agent behind it, so it is left out entirely.
"""

from __future__ import annotations

from typing import Any

HIDDEN = "(hidden)"

_MASKED = frozenset({"lease_token"})
_LEFT_OUT = frozenset({"instance_id"})


def readable(fields: dict[str, Any] | None) -> dict[str, Any] | None:
    """An event's `data` or `meta` as people may read it."""
    if not fields:
        return fields
    return {
        key: HIDDEN if key in _MASKED else value
        for key, value in fields.items()
        if key not in _LEFT_OUT
    }
