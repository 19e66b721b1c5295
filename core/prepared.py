"""Querysets compiled once per process and run again with new values.

Django builds and compiles a queryset's SQL on every call, and for the small lookups on the
agents' hot path (the bearer token of every call, with its node) that costs more than running
the statement. `Prepared` compiles a queryset once, with placeholder values, and then runs the
same SQL with the real ones; the rows become model instances the way Django's own iterator
makes them (its converters, `select_related` included), so callers get what `.first()` would
have given them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators


class Prepared:
    """`build(*placeholders)` compiled once per database connection, run as `prepared(*values)`.

    `build` must make a queryset whose SQL parameters are exactly the values it is given, in
    any order (one filter per value, no parameters of its own): each call substitutes the real
    values for the placeholders, which are strings, so the values are those of text columns.
    Anything else is refused when first compiled.
    """

    def __init__(self, build: Callable[..., QuerySet], arity: int) -> None:
        self._build = build
        self._arity = arity
        self._compiled = threading.local()  # per thread, as Django's connections are

    def first(self, *values: Any) -> Model | None:
        """The first instance the queryset built with `values` would give, or None."""
        found = self.all(*values)
        return found[0] if found else None

    def all(self, *values: Any) -> list[Model]:
        if len(values) != self._arity:
            raise TypeError(f"expected {self._arity} values, got {len(values)}")
        compiled = self._compile()
        params = [values[index] for index in compiled.order]
        with connections[compiled.db].cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        return compiled.instances(rows)

    def _compile(self) -> _Compiled:
        compiled = getattr(self._compiled, "value", None)
        if compiled is None:
            compiled = self._compiled.value = _Compiled(self._build, self._arity)
        return compiled


class _Placeholder(str):
    """A value that compiles to itself, so that it can be found among the parameters."""

    __slots__ = ()


class _Compiled:
    def __init__(self, build: Callable[..., QuerySet], arity: int) -> None:
        placeholders = [_Placeholder(f"\x00prepared-{index}\x00") for index in range(arity)]
        queryset = build(*placeholders)
        self.db = queryset.db
        self.compiler = queryset.query.get_compiler(using=self.db)
        self.sql, params = self.compiler.as_sql()
        if sorted(params) != sorted(placeholders) or len(params) != arity:
            raise ValueError(f"the queryset's parameters are not its values: {params!r}")
        self.order = [placeholders.index(param) for param in params]
        select, klass_info = self.compiler.select, self.compiler.klass_info
        if self.compiler.annotation_col_map or queryset._known_related_objects:
            raise ValueError("annotations and known related objects are not supported")
        self.model = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [column[0].target.attname for column in select[self.start : self.end]]
        self.populators = get_related_populators(klass_info, select, self.db)

    def instances(self, rows: list[tuple]) -> list[Model]:
        """Model instances from raw rows, as `ModelIterable` makes them."""
        objects = []
        for row in self.compiler.results_iter([rows]):
            obj = self.model.from_db(self.db, self.init_list, row[self.start : self.end])
            for populator in self.populators:
                populator.populate(row, obj)
            objects.append(obj)
        return objects
