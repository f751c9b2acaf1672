"""Plain SQL through Tortoise's connection, for the few queries where the ORM costs too much.

The ORM builds each query anew (a few hundred microseconds of Python per statement, more with
joins) and an object per row. Where that dominates — the weekly summary's tens of thousands of
rows, the report path's checks on every button press — a query is written once in SQL that
SQLite and PostgreSQL both accept, with `?` placeholders, and its values are converted the way
the ORM would convert them (`Converter` with a field's `to_python_value`, or an enum).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient


class Sql:
    """Runs `?`-placeholder SQL on a Tortoise connection (SQLite or PostgreSQL)."""

    def __init__(self, connection: BaseDBAsyncClient) -> None:
        self.connection = connection
        self.dialect = connection.capabilities.dialect
        if self.dialect not in ("sqlite", "postgres"):
            raise NotImplementedError(f"no plain SQL for {self.dialect}")

    async def fetch(self, query: str, values: Sequence[Any]) -> Sequence[Sequence[Any]]:
        # SQLite compares the stored ISO text, which is UTC (Tortoise converts on the way in):
        # a bound in another offset (`duban summary --date` passes local time) would be off.
        values = [v.astimezone(UTC) if isinstance(v, datetime) else v for v in values]
        if self.dialect == "postgres":
            query = _numbered(query)
        _count, rows = await self.connection.execute_query(query, values)
        return rows


@lru_cache(maxsize=256)
def _numbered(query: str) -> str:
    """asyncpg numbers its placeholders: `?` becomes $1, $2, … (none of our SQL has a literal
    question mark)."""
    numbers = itertools.count(1)
    return re.sub(r"\?", lambda _match: f"${next(numbers)}", query)


class Converter:
    """A column's values as the ORM reads them, each distinct value converted once (a plan
    has a handful of deadlines, kinds and roles over tens of thousands of rows)."""

    def __init__(self, convert: Callable[[Any], Any]) -> None:
        self.convert = convert
        self.seen: dict[Any, Any] = {}

    def __call__(self, value: Any) -> Any:
        try:
            return self.seen[value]
        except KeyError:
            converted = self.seen[value] = self.convert(value)
            return converted
