"""Rendering helpers shared by the routers: escaping, splitting long text to Telegram's limits."""

from __future__ import annotations

from aiogram.utils.text_decorations import html_decoration

MESSAGE_LIMIT = 4096


def quote(text: object) -> str:
    """Escape user or document text before it goes into an HTML message."""
    return html_decoration.quote(str(text))


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
