"""The only request parser: JSON in UTF-8, bounded in size and depth, no NaN or Infinity."""

import codecs
import json
import re
from typing import Any

from django.conf import settings
from django.utils.http import parse_header_parameters
from rest_framework import status
from rest_framework.exceptions import (
    APIException,
    ParseError,
    UnsupportedMediaType,
    ValidationError,
)
from rest_framework.parsers import JSONParser

# Only reachable through `\u` escapes: NUL cannot be stored in PostgreSQL text, and a lone
# surrogate is not Unicode at all (it cannot be encoded back, in a query or in an error body).
_UNSAFE_CHARACTER = re.compile("[\x00\ud800-\udfff]")


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body is too large."
    default_code = "too_large"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def find_unsafe_string(value: Any) -> str | None:
    """Where a key or string holds NUL or a lone surrogate, as `field.sub[0]` (`body` at the
    top, or when the key itself is the culprit, since it cannot be echoed back); else None."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _UNSAFE_CHARACTER.search(item):
                return path or "body"
        elif isinstance(item, dict):
            for key, child in item.items():
                if _UNSAFE_CHARACTER.search(key):
                    return path or "body"
                stack.append((child, f"{path}.{key}" if path else key))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
    return None


def parse_json_body(raw: bytes, charset: str | None = None) -> Any:
    """Parses a request body by Gitfleet's rules, raising DRF errors that become JSON 4xx."""
    limit = settings.MAX_REQUEST_BODY_BYTES
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
    if charset:
        try:
            if codecs.lookup(charset).name != "utf-8":
                raise UnsupportedMediaType(f"application/json; charset={charset}")
        except LookupError as exc:
            raise UnsupportedMediaType(f"application/json; charset={charset}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError("Request body is not valid UTF-8.") from exc
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise ParseError("JSON is nested too deeply.") from exc
    except ValueError as exc:
        raise ParseError(f"Malformed JSON: {exc}") from exc
    if json_depth(data) > settings.MAX_JSON_DEPTH:
        raise ParseError(f"JSON is nested deeper than {settings.MAX_JSON_DEPTH} levels.")
    where = find_unsafe_string(data) if "\\u" in text else None
    if where is not None:
        raise ValidationError(
            {where: ["May not contain NUL (\\u0000) or a lone surrogate (\\ud800-\\udfff)."]}
        )
    return data


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        charset = parse_header_parameters(media_type or "")[1].get("charset")
        raw = stream.read(settings.MAX_REQUEST_BODY_BYTES + 1) if stream is not None else b""
        return parse_json_body(raw, charset)
