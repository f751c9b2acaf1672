"""aiogram routers, one module per feature, assembled in an explicit order."""

from __future__ import annotations

from aiogram import Router

from handlers import common, fallback, lookup, onboarding, reports, summary


def build_routers() -> list[Router]:
    """Fresh routers in dispatch order (a Router can be attached to one parent only).

    Catch-alls come last, so that they see only what no feature handled.
    """
    return [
        onboarding.build_router(),  # before common: /start TOKEN here, plain /start there
        common.build_router(),
        lookup.build_router(),
        reports.build_router(),
        summary.build_router(),
        fallback.build_router(),
    ]
