"""aiogram routers, one module per feature, assembled in an explicit order."""

from __future__ import annotations

from aiogram import Router

from handlers import common, fallback


def build_routers() -> list[Router]:
    """Fresh routers in dispatch order (a Router can be attached to one parent only).

    Catch-alls come last, so that they see only what no feature handled.
    """
    return [common.build_router(), fallback.build_router()]
