"""Serializers whose fields are built once per thread, for the agents' hot path.

DRF builds a serializer's fields again for every instance: it deep-copies the declared fields,
and each copy runs the field's constructor again, nested serializers' fields included. For an
agent's lease and completion that was a quarter of the CPU of the request's work on the
database thread (BENCHMARKS.md, finding 17), more than the statements it ran. Once bound, a
serializer's fields keep nothing between calls: validation and rendering take their input as
arguments and return their output. So `validated` and `rendered` run every call through one
bound instance per serializer class and thread, with the same rules, the same errors and the
same output as a fresh instance (`tests/server/test_reused_serializers.py` holds them to it).

Only for serializers that read neither `context` nor `initial_data` nor `instance`, which
holds for the agent API's request and answer shapes.
"""

from __future__ import annotations

import threading
from typing import Any

from rest_framework import serializers

_bound = threading.local()


def _instance(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    cache = getattr(_bound, "instances", None)
    if cache is None:
        cache = _bound.instances = {}
    serializer = cache.get(serializer_class)
    if serializer is None:
        serializer = cache[serializer_class] = serializer_class()
        serializer.fields  # noqa: B018 - bound now, once
    return serializer


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """`data` validated by `serializer_class`: its `validated_data`, or the `ValidationError`
    that `is_valid(raise_exception=True)` raises, with the same detail."""
    return _instance(serializer_class).run_validation(data)


def rendered(serializer_class: type[serializers.Serializer], value: Any) -> dict[str, Any]:
    """`serializer_class(value).data`, as a plain dict."""
    return _instance(serializer_class).to_representation(value)
