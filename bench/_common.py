"""Shared bits of the benchmarks: the repository on sys.path, the example plan, a query counter."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EXAMPLE_PLAN = ROOT / "examples" / "changxing-2023-65.txt"

_QUERY_METHODS = (
    "execute_query",
    "execute_query_dict",
    "execute_insert",
    "execute_many",
    "execute_script",
)


@contextmanager
def count_queries(connection: Any) -> Iterator[list[str]]:
    """Record every SQL statement sent through `connection` (a Tortoise client) while inside.

    Wraps the connection's execute methods on the instance; transactions opened from it share
    the wrapped methods only when they reuse the instance, which the read-only summary does.
    """
    seen: list[str] = []
    originals = {}
    for name in _QUERY_METHODS:
        original = getattr(connection, name, None)
        if original is None:
            continue
        originals[name] = original

        def wrapper(query: str, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            seen.append(query)
            return _original(query, *args, **kwargs)

        setattr(connection, name, wrapper)
    try:
        yield seen
    finally:
        for name in originals:
            delattr(connection, name)  # back to the class's method
