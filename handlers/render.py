"""Rendering helpers shared by the routers: escaping, splitting long text to Telegram's limits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.text_decorations import html_decoration

MESSAGE_LIMIT = 4096


def quote(text: object) -> str:
    """Escape user or document text before it goes into an HTML message."""
    return html_decoration.quote(str(text))


Button = tuple[str, CallbackData]


def keyboard(*rows: Sequence[Button]) -> InlineKeyboardMarkup:
    """An inline keyboard from rows of (label, callback data).

    For the keyboards of every report step: aiogram's InlineKeyboardBuilder deep-copies its
    buttons on each add and adjust, which cost more than the database on the report path.
    """
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=text, callback_data=data.pack()) for text, data in row]
            for row in rows
            if row
        ]
    )


def in_rows(buttons: Iterable[Button], width: int) -> list[list[Button]]:
    """Buttons laid out `width` to a row."""
    items = list(buttons)
    return [items[start : start + width] for start in range(0, len(items), width)]


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split on line breaks into chunks of at most `limit` characters (hard-cut very long lines).

    Lines are never cut inside an HTML tag: callers put tags within one line.
    """
    chunks: list[str] = []
    current = ""
    for whole_line in text.split("\n"):
        line = whole_line
        while len(line) > limit:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            chunks.append(current)
            current = line
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks or [""]
