"""Import aiogram without building every one of its Telegram types up front.

`aiogram.types` declares its ~450 pydantic models with `defer_build=True`, then ends by calling
`model_rebuild()` on each of them with a namespace holding all of them, because the types name
each other in annotations whose imports only exist for type checkers. That loop builds a
validator for every type, most of them types a bot never receives, and each embedding those of
every type it can contain: over half of aiogram's import time and memory (`python
bench/startup.py` measures the bot with and without it).

`import_aiogram()` imports aiogram with that loop doing only its naming: the names it would have
passed are added to each type's module (those the module lacks: the imports its annotations
meant), so pydantic's own deferred build resolves them there, on a type's first use. Types a bot
never uses are never built. Call it before anything imports aiogram, as bot/cli.py does for the
commands that run the bot and tests/conftest.py for the suite; once aiogram is imported it does
nothing. tests/test_aiogram_models.py checks that every type builds to the same schema as
aiogram's own loop gives.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel

_TYPES_PACKAGE = "aiogram.types"


def import_aiogram() -> None:
    """Import aiogram, deferring the build of each Telegram type to its first use."""
    if _TYPES_PACKAGE in sys.modules:
        return
    eager = BaseModel.__dict__["model_rebuild"]

    def name_only(cls: type[BaseModel], **kwargs: Any) -> bool | None:
        namespace = kwargs.get("_types_namespace")
        if namespace is None or not cls.__module__.startswith(_TYPES_PACKAGE + "."):
            # Not aiogram's loop: rebuild as asked, the caller's frame one further away.
            depth = kwargs.get("_parent_namespace_depth", 2)
            kwargs["_parent_namespace_depth"] = depth + 1 if depth > 0 else 0
            return eager.__func__(cls, **kwargs)
        module = vars(sys.modules[cls.__module__])
        for name, value in namespace.items():
            module.setdefault(name, value)
        return None

    BaseModel.model_rebuild = classmethod(name_only)  # type: ignore[method-assign,assignment]
    try:
        import aiogram  # noqa: F401, PLC0415  (the import this function is for)
    finally:
        BaseModel.model_rebuild = eager  # type: ignore[method-assign]
