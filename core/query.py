"""Query parameters read strictly: a value the parameter cannot take is a 400 naming it, never
silently ignored, and never a number too large for the database to compare with."""

import re
from collections.abc import Mapping

from django.db.models import BigIntegerField
from rest_framework.exceptions import ValidationError

# The largest value a bigint column (SQLite INTEGER, PostgreSQL bigint) can be compared with.
BIGINT_MAX = BigIntegerField.MAX_BIGINT

# ASCII digits only: str.isdigit() and int() also take '²', '٣', ' 5' and '+5'.
_WHOLE_NUMBER = re.compile(r"[0-9]{1,19}\Z")


def whole_number(
    params: Mapping[str, str],
    name: str,
    *,
    default: int,
    minimum: int = 0,
    maximum: int = BIGINT_MAX,
    message: str | None = None,
) -> int:
    """The parameter `name` as a whole number within [minimum, maximum], or `default` if absent."""
    raw = params.get(name)
    if raw is None:
        return default
    if _WHOLE_NUMBER.match(raw) and minimum <= int(raw) <= maximum:
        return int(raw)
    raise ValidationError({name: [message or f"A whole number from {minimum} to {maximum}."]})
