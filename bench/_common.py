"""Shared bits of the benchmarks: the repository on sys.path, the example plan, a query counter."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EXAMPLE_PLAN = ROOT / "examples" / "changxing-2023-65.txt"
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"  # as tests/conftest.py

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


def compile_sources() -> None:
    """Write the repository's bytecode caches, as `pip install` does for what it installs.

    An editable install leaves the repository's modules uncompiled, and where
    PYTHONDONTWRITEBYTECODE is set (some sandboxes and CI images) a child interpreter would
    compile all of them at every start: a cost no installed bot or CLI pays.
    """
    import compileall  # noqa: PLC0415 - only the benchmarks that start interpreters need it

    for init in sorted(ROOT.glob("*/__init__.py")):  # every top-level package: bot/, storage/ …
        package = init.parent
        if package.name != "tests" and not compileall.compile_dir(package, quiet=1):
            raise SystemExit(f"compileall failed in {package.name}/")


@asynccontextmanager
async def scratch_database(kind: str, folder: Path) -> AsyncIterator[str]:
    """A new empty database: a SQLite file in `folder`, or a PostgreSQL database dropped after."""
    if kind == "sqlite":
        yield f"sqlite://{folder / 'duban.sqlite3'}"
        return
    import asyncpg  # noqa: PLC0415 - only the PostgreSQL run needs it

    server = os.environ.get("DUBAN_TEST_POSTGRES_URL") or POSTGRES_SERVER
    admin = await asyncpg.connect(server, timeout=5)
    name = f"duban_bench_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
