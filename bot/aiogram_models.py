"""Import aiogram without building every one of its pydantic models up front.

Importing aiogram builds a validator for each of its ~450 Telegram types and ~160 API methods,
each embedding those of every type it can contain: over three quarters of aiogram's import time
and memory (`python bench/startup.py` measures a bot started either way), spent mostly on types
and methods a bot never uses. Pydantic can build a model on its first use instead
(`defer_build`); `import_aiogram()` imports aiogram so that every one of them is built then:

- The types are declared with `defer_build=True`, but `aiogram.types` ends by calling
  `model_rebuild()` on each with a namespace holding all of them, because they name each other
  in annotations whose imports exist only for type checkers. Here that loop only adds those
  names to each type's module (the ones it lacks: the imports the annotations meant), where
  pydantic's deferred build resolves them.
- The methods are not declared deferred: their base class, `TelegramMethod`, is given
  `defer_build=True` as soon as its module has run, before the methods inherit its config.

Call it before anything imports aiogram, as bot/cli.py does for the commands that run the bot
and tests/conftest.py for the suite; once aiogram is imported it does nothing.
tests/test_aiogram_models.py checks that every type and method builds to the same schema as
aiogram's own import gives.
"""

from __future__ import annotations

import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from pydantic import BaseModel

_TYPES_PACKAGE = "aiogram.types"
_METHODS_BASE = "aiogram.methods.base"


def import_aiogram() -> None:
    """Import aiogram, deferring the build of each type and method to its first use."""
    if _TYPES_PACKAGE in sys.modules:
        return
    eager = BaseModel.__dict__["model_rebuild"]
    finder = _DeferMethods()
    BaseModel.model_rebuild = classmethod(_name_types(eager))  # type: ignore[method-assign,assignment]
    sys.meta_path.insert(0, finder)
    try:
        import aiogram  # noqa: F401, PLC0415  (the import this function is for)
    finally:
        sys.meta_path.remove(finder)
        BaseModel.model_rebuild = eager  # type: ignore[method-assign]


def _name_types(eager: classmethod) -> Any:
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

    return name_only


class _DeferMethods:
    """A meta-path finder for aiogram.methods.base alone: found as usual, and once it has run,
    its TelegramMethod defers building (the method classes are created after it)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _METHODS_BASE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return None
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            base = getattr(module, "TelegramMethod", None)
            if isinstance(base, type) and issubclass(base, BaseModel):  # else: built as usual
                base.model_config["defer_build"] = True

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
