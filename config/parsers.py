"""The only request parser: JSON in UTF-8, bounded in size and depth, no NaN or Infinity."""

import codecs
import json
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import JSONParser

from config.errors import PayloadTooLarge


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
    return data


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        charset = None
        if media_type and "charset=" in media_type:
            charset = media_type.split("charset=", 1)[1].split(";", 1)[0].strip().strip('"')
        raw = stream.read(settings.MAX_REQUEST_BODY_BYTES + 1) if stream is not None else b""
        return parse_json_body(raw, charset)
