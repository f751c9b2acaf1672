"""Handlers answer the person in front of them; everyone else is told through the ledger.

A handler may write a new message only to the sender of the update it handles
(`<event>.from_user.id`, e.g. when the pressed message is too old to edit); `message.answer`,
`callback.answer` and edits of the pressed message are answers too and are not calls of the Bot
API's send methods. A send to any other chat must be a ledger row (bot.notices), sent by
bot.delivery.Sender with its retries, 429 handling and unreachable notice. This test reads the
handlers' source (the AST), so a new direct send to somebody else fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

HANDLERS = Path(__file__).resolve().parent.parent / "handlers"
SEND_METHODS = {
    "send_message",
    "send_photo",
    "send_document",
    "send_media_group",
    "send_video",
    "send_audio",
    "send_voice",
    "send_animation",
    "send_sticker",
    "copy_message",
    "copy_messages",
    "forward_message",
    "forward_messages",
}


def _chat_argument(call: ast.Call) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == "chat_id":
            return keyword.value
    return call.args[0] if call.args else None


def _is_the_sender(node: ast.expr | None) -> bool:
    """`<something>.from_user.id`: the person whose update is being handled."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "id"
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "from_user"
    )


def direct_sends_to_others(source: str, filename: str) -> list[str]:
    return [
        f"{filename}:{node.lineno}: {ast.unparse(node.func)}(...)"
        for node in ast.walk(ast.parse(source, filename))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in SEND_METHODS
        and not _is_the_sender(_chat_argument(node))
    ]


def test_handlers_send_directly_only_to_the_person_in_front_of_them() -> None:
    files = sorted(HANDLERS.rglob("*.py"))
    assert files
    found = [
        line
        for path in files
        for line in direct_sends_to_others(path.read_text(encoding="utf-8"), str(path))
    ]
    assert found == [], "send these through the ledger (bot.notices):\n" + "\n".join(found)


def test_the_check_sees_a_send_to_someone_else() -> None:
    source = (
        "async def h(callback, bot, recipient):\n"
        "    await callback.bot.send_message(callback.from_user.id, 'ok')\n"
        "    await bot.send_message(recipient.telegram_user_id, 'not ok')\n"
        "    await bot.send_photo(chat_id=-100, photo=b'')\n"
    )
    assert direct_sends_to_others(source, "x.py") == [
        "x.py:3: bot.send_message(...)",
        "x.py:4: bot.send_photo(...)",
    ]
