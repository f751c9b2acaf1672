"""The floor bench/burst.py measures `duban run` against: a bare aiogram bot storing a report.

    BOT_TOKEN=… TELEGRAM_API_URL=http://127.0.0.1:PORT DATABASE_URL=sqlite://… \\
        python bench/burst_floor.py

The same flow shape as a report in Duban — a reply to a prompt, a status button, a confirm
button — with the least any bot storing reports must do, and nothing else:

1. a message replying to a prompt (one of the bot's messages with `r1:<task id>:<status>`
   buttons): look the sender up (statement 1), keep the draft in a dict, answer with the four
   status buttons `r4:<flow>:<status>`;
2. a status button: answer the press, edit the message into a preview with `r5:<flow>:ok`;
3. the confirm button: look the task up among the sender's department's (statement 2), insert
   the report (statement 3), answer the press, edit the message into a receipt with
   `r7:<report id>:…` buttons.

Three statements through Tortoise's ORM on the bot's own models and connection settings
(storage.db.tortoise_config); no FSM storage, no events
isolation, no i18n, no checks (a stale press or a guest finds a KeyError in the log). Built the
way bench/bare_aiogram.py builds its bot (AiohttpSession on TelegramAPIServer.from_base, HTML by
default), long polling until SIGTERM.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from dataclasses import dataclass
from html import escape

import _common  # noqa: F401  (puts the repository on sys.path)
from aiogram import Bot, Dispatcher, F
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from tortoise import Tortoise

from storage.db import tortoise_config
from storage.models import Assignment, Liaison, Report

STATUSES = ("on_track", "at_risk", "blocked", "done")


@dataclass
class Draft:
    liaison_id: int
    department_id: int
    task_id: int
    text: str
    message_id: int
    status: str = "on_track"


_drafts: dict[int, Draft] = {}  # by flow number
_flows = itertools.count(1)


def _keyboard(*rows: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=text, callback_data=data) for text, data in row]
            for row in rows
        ]
    )


def _prompt_task(message: Message) -> int | None:
    prompt = message.reply_to_message
    if prompt is None or prompt.reply_markup is None:
        return None
    for row in prompt.reply_markup.inline_keyboard:
        for button in row:
            if (button.callback_data or "").startswith("r1:"):
                return int(button.callback_data.split(":")[1])
    return None


async def reply_to_prompt(message: Message) -> None:
    task_id = _prompt_task(message)
    if task_id is None or message.from_user is None:
        return
    sender = (
        await Liaison.filter(telegram_user_id=message.from_user.id, active=True)
        .first()
        .values("id", "department_id")
    )  # statement 1
    flow = next(_flows)
    _drafts[flow] = Draft(
        sender["id"], sender["department_id"], task_id, message.text or "", message.message_id
    )
    statuses = [(status, f"r4:{flow}:{status}") for status in STATUSES]
    await message.answer("已收到。请选择状态：", reply_markup=_keyboard(statuses[:2], statuses[2:]))


async def choose_status(callback: CallbackQuery) -> None:
    _prefix, flow, status = (callback.data or "").split(":")
    draft = _drafts[int(flow)]
    draft.status = status
    await callback.answer()
    await callback.message.edit_text(
        f"<b>请核对</b>\n{escape(draft.text)}\n状态：{status}",
        reply_markup=_keyboard([("✅ 提交", f"r5:{flow}:ok"), ("取消", f"r5:{flow}:cancel")]),
    )


async def confirm(callback: CallbackQuery) -> None:
    _prefix, flow, _action = (callback.data or "").split(":")
    draft = _drafts.pop(int(flow))
    task_id = (
        await Assignment.filter(department_id=draft.department_id, task_id=draft.task_id)
        .first()
        .values_list("task_id", flat=True)
    )  # statement 2
    report = await Report.create(
        task_id=task_id,
        department_id=draft.department_id,
        liaison_id=draft.liaison_id,
        status=draft.status,
        text=draft.text,
        chat_id=callback.from_user.id,
        message_id=draft.message_id,
    )  # statement 3
    await callback.answer("报送成功")
    await callback.message.edit_text(
        f"<b>报送成功</b>\n{escape(draft.text)}",
        reply_markup=_keyboard([("修改", f"r7:{report.id}:edit"), ("撤回", f"r7:{report.id}:wd")]),
    )


async def main() -> None:
    # The bot's own connection settings (SQLite: WAL, busy timeout, foreign keys), no migrations:
    # bench/burst.py has created the schema.
    await Tortoise.init(
        config=tortoise_config(os.environ["DATABASE_URL"]), _enable_global_fallback=True
    )
    session = AiohttpSession(api=TelegramAPIServer.from_base(os.environ["TELEGRAM_API_URL"]))
    bot = Bot(
        token=os.environ["BOT_TOKEN"],
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )
    dispatcher = Dispatcher()
    dispatcher.message.register(reply_to_prompt, F.reply_to_message)
    dispatcher.callback_query.register(choose_status, F.data.startswith("r4:"))
    dispatcher.callback_query.register(confirm, F.data.endswith(":ok"))
    try:
        await dispatcher.start_polling(bot, handle_signals=True)
    finally:
        await Tortoise.close_connections()


if __name__ == "__main__":
    asyncio.run(main())
