"""The Telegram emulator, driven by a real aiogram Bot and a real Dispatcher polling it."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command, CommandStart
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    BufferedInputFile,
    CallbackQuery,
    ChatMemberAdministrator,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    MenuButtonCommands,
    Message,
    ReplyParameters,
)

from telegram_emulator import FloodLimits, TelegramEmulator, Upload, parse_html, png_header
from telegram_emulator.errors import ApiError
from tests.emulator_fixtures import (
    BOT_USERNAME,
    TOKEN,
    FakeClock,
    bot_fixture,  # noqa: F401 - provides the "bot" fixture
    close_bot,
    make_bot,
    polling,
    tg_fixture,  # noqa: F401 - provides the "tg" fixture
    waiting_poll,
)

# -- a tiny bot under test ------------------------------------------------------------------------


def build_dispatcher() -> Dispatcher:
    """A fresh dispatcher per test (a Router can be attached to one parent only)."""
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        name = message.from_user.first_name if message.from_user else "?"
        await message.answer(f"<b>你好</b>, {name}")

    @router.message(Command("menu"))
    async def menu(message: Message) -> None:
        keyboard = InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="完成", callback_data="t1:done:7")]]
        )
        await message.answer("任务 7", reply_markup=keyboard)

    @router.callback_query(F.data.startswith("t1:"))
    async def pressed(query: CallbackQuery) -> None:
        await query.answer(f"已记录 {query.data}")
        if isinstance(query.message, Message):
            await query.message.edit_text("任务 7 ✅")

    @router.edited_message()
    async def edited(message: Message) -> None:
        await message.answer(f"edited: {message.text}")

    @router.message(Command("report"))
    async def report(message: Message) -> None:
        await message.answer("report received")

    @router.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(f"echo: {message.text}")

    dp = Dispatcher()
    dp.include_router(router)
    return dp


# -- polling end to end ---------------------------------------------------------------------------


async def test_start_reaches_handler_and_reply_is_recorded(tg: TelegramEmulator) -> None:
    alice = tg.add_user("Alice", language_code="zh")
    async with polling(build_dispatcher(), make_bot(tg), tg):
        sent = tg.send_text(alice, None, "/start")
        reply = await tg.wait_for_message(chat_id=alice.id)

    assert sent["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert reply.text == "你好, Alice"
    assert reply["entities"] == [{"type": "bold", "offset": 0, "length": 2}]
    assert reply["chat"] == {"id": alice.id, "type": "private", "first_name": "Alice"}
    assert reply["from"]["username"] == BOT_USERNAME
    assert reply.message_id == sent["message_id"] + 1  # one id sequence per chat
    call = tg.calls_to("sendMessage")[0]
    assert call.params["parse_mode"] == "HTML"
    assert call.params["chat_id"] == str(alice.id)  # aiogram sends form fields
    assert [m.text for m in tg.messages_to(alice)] == ["你好, Alice"]


async def test_long_poll_waits_and_returns_early_with_the_update(tg: TelegramEmulator) -> None:
    alice = tg.add_user("Alice")
    async with polling(build_dispatcher(), make_bot(tg), tg, polling_timeout=30):
        poll = waiting_poll(tg)
        assert poll.params["timeout"] == "30"
        update_count = len(tg.updates)
        tg.send_text(alice, None, "hello")
        await tg.wait_for_message(chat_id=alice.id)
        update_id = tg.updates[update_count]["update_id"]

    # The poll was open before the update existed and answered with it (long before its 30 s).
    assert poll.seq < tg.world.update_seq[update_id] < poll.done_seq  # type: ignore[operator]
    assert [u["update_id"] for u in poll.result] == [update_id]


async def test_get_updates_without_timeout_answers_at_once(tg: TelegramEmulator) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{tg.base_url}/bot{TOKEN}/getUpdates"
        async with http.post(url, data={"timeout": "0"}) as response:
            assert await response.json() == {"ok": True, "result": []}


async def test_offset_confirms_updates_and_redelivery_is_possible(tg: TelegramEmulator) -> None:
    alice = tg.add_user("Alice")
    async with polling(build_dispatcher(), make_bot(tg), tg):
        for text in ("one", "two", "three"):
            tg.send_text(alice, None, text)
        replies = [(await tg.wait_for_message(chat_id=alice.id)).text for _ in range(3)]
        await tg.wait_idle()
        first = tg.updates[0]["update_id"]
        assert tg.pending_updates == []
        assert all(count == 1 for count in tg.deliveries.values())

        tg.redeliver(first)  # the same update_id again, as after a crash before confirming
        again = await tg.wait_for_message(chat_id=alice.id)
        await tg.wait_idle()

    assert sorted(replies) == ["echo: one", "echo: three", "echo: two"]
    assert again.text == "echo: one"
    assert tg.deliveries[first] == 2


async def test_unconfirmed_updates_are_delivered_again(tg: TelegramEmulator) -> None:
    """Telegram's offset rule: getUpdates confirms only the updates below its offset."""
    alice = tg.add_user("Alice")
    for text in ("one", "two", "three"):
        tg.send_text(alice, None, text)
    ids = [update["update_id"] for update in tg.updates]

    async def get_updates(**params: str) -> list[int]:
        async with aiohttp.ClientSession() as http:
            url = f"{tg.base_url}/bot{TOKEN}/getUpdates"
            async with http.post(url, data={"timeout": "0", **params}) as response:
                return [update["update_id"] for update in (await response.json())["result"]]

    assert await get_updates() == ids
    assert await get_updates() == ids  # nothing confirmed yet: all of them again
    assert await get_updates(offset=str(ids[1])) == ids[1:]  # confirms the first one only
    assert await get_updates() == ids[1:]
    assert await get_updates(offset=str(ids[2] + 1)) == []
    assert tg.pending_updates == []


async def test_slow_calls_wait_and_a_client_that_hangs_up_gets_nothing_done(
    tg: TelegramEmulator,
) -> None:
    alice = tg.add_user("Alice", started=True)
    impatient = make_bot(tg, timeout=0.3)
    try:
        tg.slow("sendMessage", 30, count=1)
        with pytest.raises(TelegramNetworkError, match="timeout"):
            await impatient.send_message(alice.id, "never sent")
        await tg.wait_until(lambda: tg.calls_to("sendMessage")[0].done_seq is not None or None)
        assert tg.sent == []
        await impatient.send_message(alice.id, "at once")  # count=1: the next call is not slow
        tg.slow("sendMessage", 0.05)
        await impatient.send_message(alice.id, "after a while")
        tg.slow("sendMessage", 0)
        assert [m.text for m in tg.sent] == ["at once", "after a while"]
    finally:
        await close_bot(impatient)


async def test_callback_query_is_answered_and_message_edited(tg: TelegramEmulator) -> None:
    alice = tg.add_user("Alice")
    async with polling(build_dispatcher(), make_bot(tg), tg):
        tg.send_text(alice, None, "/menu")
        menu = await tg.wait_for_message(chat_id=alice.id)
        assert menu.callback_data == ["t1:done:7"]
        query_id = tg.press(alice, menu, "t1:done:7")
        answer = await tg.wait_for_answer(query_id)
        await tg.wait_for_call("editMessageText")

    assert answer["text"] == "已记录 t1:done:7"
    assert tg.callback_queries[query_id].answered
    assert tg.callback_answers == [answer]
    assert menu.text == "任务 7 ✅"  # current state
    assert menu.reply_markup is None  # edit without reply_markup drops the keyboard
    assert [v["text"] for v in menu.versions] == ["任务 7", "任务 7 ✅"]
    with pytest.raises(ValueError, match="no button"):
        tg.press(alice, menu, "t1:done:7")  # the keyboard is gone


async def test_user_edit_arrives_as_edited_message(tg: TelegramEmulator) -> None:
    alice = tg.add_user("Alice")
    async with polling(build_dispatcher(), make_bot(tg), tg):
        original = tg.send_text(alice, None, "draft")
        await tg.wait_for_message(chat_id=alice.id)
        tg.edit_text(alice, original, "final")
        reply = await tg.wait_for_message(chat_id=alice.id)
    assert reply.text == "edited: final"
    assert "edited_message" in tg.updates[-1]


async def test_group_privacy_mode_and_addressed_commands(tg: TelegramEmulator) -> None:
    alice, bob = tg.add_user("Alice"), tg.add_user("Bob")
    group = tg.add_group("工作专班群", members=[alice, bob])
    async with polling(build_dispatcher(), make_bot(tg), tg):
        tg.send_text(alice, group, "just chatting")  # privacy mode: not for the bot
        tg.send_text(bob, group, "/report@other_bot")  # another bot's command
        command = tg.send_text(alice, group, f"/report@{BOT_USERNAME} 本周")
        reply = await tg.wait_for_message(chat_id=group.id)
        tg.send_text(bob, group, "reply to the bot", reply_to=reply)
        echo = await tg.wait_for_message(chat_id=group.id)
        await tg.wait_idle()

    assert command["entities"] == [{"type": "bot_command", "offset": 0, "length": 17}]
    assert reply.text == "report received"
    assert echo.text == "echo: reply to the bot"
    delivered = [u["message"]["text"] for u in tg.updates]
    assert delivered == [f"/report@{BOT_USERNAME} 本周", "reply to the bot"]


async def test_deliver_raw_twice_runs_the_handler_twice(tg: TelegramEmulator) -> None:
    alice = tg.add_user("Alice", started=True)
    raw = {
        "update_id": 500,
        "message": {
            "message_id": 1,
            "date": 1_700_000_000,
            "chat": {"id": alice.id, "type": "private", "first_name": "Alice"},
            "from": {"id": alice.id, "is_bot": False, "first_name": "Alice"},
            "text": "raw",
        },
    }
    async with polling(build_dispatcher(), make_bot(tg), tg):
        tg.deliver_raw(raw)
        await tg.wait_for_message(chat_id=alice.id)
        await tg.wait_idle()
        tg.deliver_raw(raw)  # same update_id although it was confirmed
        await tg.wait_for_message(chat_id=alice.id)
    assert tg.deliveries[500] == 2


async def test_media_and_membership_updates_parse_in_aiogram(tg: TelegramEmulator) -> None:
    """Every update shape the emulator builds must validate as aiogram types."""
    seen: list[str] = []
    router = Router()

    @router.message(F.photo)
    async def photo(message: Message) -> None:
        assert message.photo is not None
        largest = message.photo[-1]
        seen.append(f"photo {largest.width}x{largest.height} {message.caption}")

    @router.message(F.document)
    async def document(message: Message) -> None:
        assert message.document is not None
        seen.append(f"document {message.document.file_name}")

    @router.message(F.sticker)
    async def sticker(message: Message) -> None:
        assert message.sticker is not None
        seen.append(f"sticker {message.sticker.emoji}")

    @router.message(F.voice)
    async def voice(message: Message) -> None:
        assert message.voice is not None
        seen.append(f"voice {message.voice.duration}")

    @router.my_chat_member()
    async def membership(update: ChatMemberUpdated) -> None:
        seen.append(f"{update.chat.type} {update.new_chat_member.status}")

    @router.message(F.new_chat_members | F.migrate_to_chat_id | F.migrate_from_chat_id)
    async def service(message: Message) -> None:
        seen.append("service")

    dp = Dispatcher()
    dp.include_router(router)
    alice = tg.add_user("Alice")
    group = tg.add_group("群", members=[alice], bot_member=False)
    async with polling(dp, make_bot(tg), tg):
        tg.send_photo(alice, caption="进度照片", width=640, height=480)
        tg.send_document(alice, content=b"x", file_name="plan.docx")
        tg.send_sticker(alice)
        tg.send_voice(alice, duration=4)
        tg.block_bot(alice)
        tg.add_bot(group, alice)
        tg.upgrade_group(group)
        await tg.wait_until(lambda: len(seen) == 9)

    # Handlers run as concurrent tasks, so only the set of outcomes is fixed.
    assert sorted(seen) == sorted(
        [
            "photo 640x480 进度照片",
            "document plan.docx",
            "sticker 👍",
            "voice 4",
            "private kicked",
            "group member",
            "service",
            "service",
            "service",
        ]
    )


# -- validation with direct Bot calls -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("<foo>x</foo>", 'Unsupported start tag "foo" at byte offset 0'),
        ("任务<div>", 'Unsupported start tag "div" at byte offset 6'),
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<b", "Unclosed start tag at byte offset 0"),
        ('<span class="red">x</span>', 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
async def test_bad_html_is_rejected_like_telegram(
    tg: TelegramEmulator, bot: Bot, text: str, reason: str
) -> None:
    alice = tg.add_user("Alice", started=True)
    with pytest.raises(TelegramBadRequest) as raised:
        await bot.send_message(alice.id, text)
    assert raised.value.message == f"Bad Request: can't parse entities: {reason}"
    assert tg.sent == []  # a failed message is not recorded as delivered


def test_html_parser_entities_and_offsets() -> None:
    text, entities = parse_html(
        '😀 <b>粗<i>斜</i></b> &lt;3 &#x4e2d; <a href="https://x.org/?a=1&amp;b=2">link</a> '
        '<pre><code class="language-python">x = 1</code></pre> <tg-spoiler>s</tg-spoiler> '
        "<blockquote expandable>q</blockquote> a &b > c"
    )
    assert text == "😀 粗斜 <3 中 link x = 1 s q a &b > c"
    assert entities == [
        {"offset": 3, "length": 2, "type": "bold"},  # the emoji counts 2 UTF-16 units
        {"offset": 4, "length": 1, "type": "italic"},
        {"offset": 11, "length": 4, "type": "text_link", "url": "https://x.org/?a=1&b=2"},
        {"offset": 16, "length": 5, "type": "pre", "language": "python"},
        {"offset": 22, "length": 1, "type": "spoiler"},
        {"offset": 24, "length": 1, "type": "expandable_blockquote"},
    ]


async def test_message_length_is_measured_after_parsing(tg: TelegramEmulator, bot: Bot) -> None:
    alice = tg.add_user("Alice", started=True)
    fits = "<b>" + "字" * 4094 + "</b>&lt;&gt;"  # 4096 characters once parsed
    message = await bot.send_message(alice.id, fits)
    assert len(message.text or "") == 4096
    with pytest.raises(TelegramBadRequest, match="Bad Request: message is too long"):
        await bot.send_message(alice.id, "x" * 4097)
    with pytest.raises(TelegramBadRequest, match="Bad Request: message text is empty"):
        await bot.send_message(alice.id, "<b> </b>")
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await bot.send_photo(
            alice.id, BufferedInputFile(png_header(10, 10), "p.png"), caption="x" * 1025
        )
    assert len(tg.sent) == 1


async def test_inline_keyboard_callback_data_limit(tg: TelegramEmulator, bot: Bot) -> None:
    alice = tg.add_user("Alice", started=True)

    def keyboard(data: str) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="b", callback_data=data)]]
        )

    await bot.send_message(alice.id, "ok", reply_markup=keyboard("任" * 21))  # 63 bytes
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(alice.id, "too long", reply_markup=keyboard("任" * 22))
    assert [m.callback_data for m in tg.sent] == [["任" * 21]]


async def test_edit_rules(tg: TelegramEmulator, bot: Bot) -> None:
    alice = tg.add_user("Alice", started=True)
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="b", callback_data="x")]]
    )
    sent = await bot.send_message(alice.id, "<b>v1</b>", reply_markup=markup)
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "<b>v1</b>", chat_id=alice.id, message_id=sent.message_id, reply_markup=markup
        )
    edited = await bot.edit_message_text(
        "v1", chat_id=alice.id, message_id=sent.message_id, reply_markup=markup
    )  # entities differ: modified
    assert isinstance(edited, Message)
    assert edited.edit_date is not None
    await bot.edit_message_reply_markup(chat_id=alice.id, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=alice.id, message_id=999)
    record = tg.messages_to(alice)[0]
    assert len(record.versions) == 3
    assert record.reply_markup is None
    assert await bot.delete_message(alice.id, sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(alice.id, sent.message_id)
    assert tg.messages_to(alice) == []
    assert tg.messages_to(alice, include_deleted=True)[0].deleted


async def test_answering_a_query_twice_or_unknown_fails(tg: TelegramEmulator, bot: Bot) -> None:
    alice = tg.add_user("Alice", started=True)
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="b", callback_data="x")]]
    )
    sent = await bot.send_message(alice.id, "pick", reply_markup=markup)
    query_id = tg.press(alice, tg.messages_to(alice)[0], "x")
    with pytest.raises(TelegramBadRequest, match="MESSAGE_TOO_LONG"):
        await bot.answer_callback_query(query_id, text="x" * 201)
    assert await bot.answer_callback_query(query_id, text="ok")
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query_id)
    with pytest.raises(TelegramBadRequest, match="query ID is invalid"):
        await bot.answer_callback_query("123")
    assert sent.message_id == tg.callback_queries[query_id].message_id


async def test_replies_and_reply_parameters(tg: TelegramEmulator, bot: Bot) -> None:
    alice = tg.add_user("Alice")
    question = tg.send_text(alice, None, "进度如何?")
    reply = await bot.send_message(
        alice.id, "见附件", reply_parameters=ReplyParameters(message_id=question["message_id"])
    )
    assert reply.reply_to_message is not None
    assert reply.reply_to_message.text == "进度如何?"
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(alice.id, "x", reply_parameters=ReplyParameters(message_id=999))
    lenient = ReplyParameters(message_id=999, allow_sending_without_reply=True)
    assert (
        await bot.send_message(alice.id, "x", reply_parameters=lenient)
    ).reply_to_message is None


async def test_chat_info_members_and_actions(tg: TelegramEmulator, bot: Bot) -> None:
    alice, bob = tg.add_user("Alice", username="alice"), tg.add_user("Bob")
    group = tg.add_group(
        "协调群", members=[bob], admins=[alice], supergroup=True, username="xietiao", bot_admin=True
    )
    chat = await bot.get_chat("@xietiao")
    assert (chat.id, chat.type, chat.title) == (group.id, "supergroup", "协调群")
    assert isinstance(await bot.get_chat_member(group.id, alice.id), ChatMemberAdministrator)
    assert (await bot.get_chat_member(group.id, bob.id)).status == "member"
    assert (await bot.get_chat_member(group.id, tg.bot.id)).status == "administrator"
    admins = await bot.get_chat_administrators(group.id)
    assert {a.user.id for a in admins} == {alice.id, tg.bot.id}
    assert await bot.get_chat_member_count(group.id) == 3
    assert (await bot.get_chat(alice.id)).username == "alice"
    tg.press_start(alice)
    assert await bot.send_chat_action(alice.id, "typing")
    with pytest.raises(TelegramBadRequest, match="wrong parameter action"):
        await bot.send_chat_action(alice.id, "dancing")
    assert tg.world.chat_actions == [(alice.id, "typing")]
    assert await bot.set_chat_menu_button(menu_button=MenuButtonCommands())
    assert isinstance(await bot.get_chat_menu_button(), MenuButtonCommands)
    assert await bot.delete_webhook(drop_pending_updates=True)
    info = await bot.get_webhook_info()
    assert (info.url, info.pending_update_count) == ("", 0)


# -- faults ---------------------------------------------------------------------------------------


async def test_injected_429_raises_retry_after(tg: TelegramEmulator, bot: Bot) -> None:
    alice = tg.add_user("Alice", started=True)
    tg.fail_next("sendMessage", 429, retry_after=7)
    with pytest.raises(TelegramRetryAfter) as raised:
        await bot.send_message(alice.id, "x")
    assert raised.value.retry_after == 7
    assert tg.calls[-1].response == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 7",
        "parameters": {"retry_after": 7},
    }
    assert tg.sent == []
    await bot.send_message(alice.id, "again")  # only the next call failed
    assert [m.text for m in tg.sent] == ["again"]


async def test_injected_5xx_raises_server_error(tg: TelegramEmulator, bot: Bot) -> None:
    alice = tg.add_user("Alice", started=True)
    tg.fail_next("sendMessage", 502, count=2)
    for _ in range(2):
        with pytest.raises(TelegramServerError, match="Bad Gateway"):
            await bot.send_message(alice.id, "x")
    await bot.send_message(alice.id, "x")
    assert len(tg.sent) == 1
    assert [f.status for f in tg.faults] == [502, 502]


async def test_dropped_and_timed_out_requests(tg: TelegramEmulator) -> None:
    alice = tg.add_user("Alice", started=True)
    impatient = make_bot(tg, timeout=0.2)
    try:
        tg.timeout_next("sendMessage")  # dropped at once
        with pytest.raises(TelegramNetworkError):
            await impatient.send_message(alice.id, "lost")
        tg.timeout_next("sendMessage", hang=30)  # longer than the client waits
        with pytest.raises(TelegramNetworkError, match="timeout"):
            await impatient.send_message(alice.id, "lost too")
        assert tg.sent == []
        tg.timeout_next("sendMessage", deliver=True)  # sent, but the bot never hears so
        with pytest.raises(TelegramNetworkError):
            await impatient.send_message(alice.id, "delivered")
        assert [m.text for m in tg.sent] == ["delivered"]
    finally:
        await close_bot(impatient)


async def test_chaos_is_reproducible_with_a_seed(tg: TelegramEmulator, bot: Bot) -> None:
    alice = tg.add_user("Alice", started=True)

    async def run() -> list[str]:
        outcomes = []
        for i in range(30):
            try:
                await bot.send_message(alice.id, f"m{i}")
                outcomes.append("ok")
            except TelegramRetryAfter:
                outcomes.append("429")
            except TelegramServerError:
                outcomes.append("5xx")
        return outcomes

    tg.chaos(rate=0.3, kinds=("429", "5xx"), seed=7)
    first = await run()
    tg.chaos(rate=0.3, kinds=("429", "5xx"), seed=7)
    second = await run()
    tg.chaos(rate=0)
    assert first == second
    assert {"ok", "429", "5xx"} <= set(first)
    assert len(tg.sent) == first.count("ok") * 2  # failed sends were never delivered


async def test_forbidden_cases(tg: TelegramEmulator, bot: Bot) -> None:
    stranger = tg.add_user("Stranger")
    alice = tg.add_user("Alice")
    group = tg.add_group("协调群", members=[alice])
    with pytest.raises(TelegramForbiddenError, match="bot can't initiate conversation"):
        await bot.send_message(stranger.id, "hi")
    tg.press_start(alice)
    await bot.send_message(alice.id, "welcome")
    tg.block_bot(alice)
    with pytest.raises(TelegramForbiddenError, match="Forbidden: bot was blocked by the user"):
        await bot.send_message(alice.id, "still there?")
    tg.kick_bot(group)
    with pytest.raises(TelegramForbiddenError, match="bot was kicked from the group chat"):
        await bot.send_message(group.id, "hello group")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(-42, "nobody")
    assert [m.text for m in tg.sent] == ["welcome"]
    kinds = [next(k for k in u if k != "update_id") for u in tg.updates]
    assert kinds == ["message", "my_chat_member", "my_chat_member"]


async def test_upgraded_group_answers_migrate_to_chat(tg: TelegramEmulator, bot: Bot) -> None:
    alice = tg.add_user("Alice")
    group = tg.add_group("专班", members=[alice])
    supergroup = tg.upgrade_group(group)
    with pytest.raises(TelegramMigrateToChat) as raised:
        await bot.send_message(group.id, "x")
    assert raised.value.migrate_to_chat_id == supergroup.id
    await bot.send_message(supergroup.id, "x")
    assert tg.sent[0].chat_id == supergroup.id


# -- files ------------------------------------------------------------------------------------


async def test_send_document_multipart_and_download(tg: TelegramEmulator, bot: Bot) -> None:
    alice = tg.add_user("Alice", started=True)
    content = "部门,状态\n住建局,绿\n".encode()
    message = await bot.send_document(
        alice.id, BufferedInputFile(content, "weekly.csv"), caption="<b>周报</b>"
    )
    assert message.document is not None
    assert message.document.file_name == "weekly.csv"
    assert message.document.mime_type == "text/csv"
    assert message.document.file_size == len(content)
    assert message.caption == "周报"
    call = tg.calls_to("sendDocument")[0]
    assert call.params["document"].startswith("attach://")
    upload = call.params[call.params["document"].removeprefix("attach://")]
    assert isinstance(upload, Upload)
    assert upload.content == content
    downloaded = await bot.download(message.document.file_id)
    assert downloaded is not None
    assert downloaded.read() == content
    again = await bot.send_document(alice.id, message.document.file_id)  # resend by file_id
    assert again.document is not None
    assert again.document.file_unique_id == message.document.file_unique_id


async def test_send_photo_sizes_and_invalid_image(tg: TelegramEmulator, bot: Bot) -> None:
    alice = tg.add_user("Alice", started=True)
    message = await bot.send_photo(alice.id, BufferedInputFile(png_header(1600, 900), "c.png"))
    assert message.photo is not None
    assert [(p.width, p.height) for p in message.photo] == [
        (90, 51),
        (320, 180),
        (800, 450),
        (1280, 720),
        (1600, 900),
    ]
    with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
        await bot.send_photo(alice.id, BufferedInputFile(b"not an image", "x.png"))
    with pytest.raises(TelegramBadRequest, match="type of file mismatch"):
        await bot.send_document(alice.id, message.photo[-1].file_id)


async def test_user_sends_document_the_bot_can_download(tg: TelegramEmulator, bot: Bot) -> None:
    alice = tg.add_user("Alice")
    sent = tg.send_document(alice, None, content=b"plan text", file_name="plan.txt")
    downloaded = await bot.download(sent["document"]["file_id"])
    assert downloaded is not None
    assert downloaded.read() == b"plan text"


# -- commands -------------------------------------------------------------------------------


async def test_set_my_commands_per_scope_and_language(tg: TelegramEmulator, bot: Bot) -> None:
    group = tg.add_group("协调群", supergroup=True)
    await bot.set_my_commands([BotCommand(command="start", description="Start")])
    await bot.set_my_commands(
        [BotCommand(command="report", description="报送进度")],
        scope=BotCommandScopeAllPrivateChats(),
        language_code="zh",
    )
    await bot.set_my_commands(
        [BotCommand(command="summary", description="周报")],
        scope=BotCommandScopeChat(chat_id=group.id),
    )
    assert tg.commands == {
        ("default", ""): [{"command": "start", "description": "Start"}],
        ("all_private_chats", "zh"): [{"command": "report", "description": "报送进度"}],
        (f"chat:{group.id}", ""): [{"command": "summary", "description": "周报"}],
    }
    zh = await bot.get_my_commands(scope=BotCommandScopeAllPrivateChats(), language_code="zh")
    assert [c.command for c in zh] == ["report"]
    assert await bot.get_my_commands(scope=BotCommandScopeAllPrivateChats()) == []
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Report", description="x")])
    with pytest.raises(TelegramBadRequest, match="command description must be non-empty"):
        await bot.set_my_commands([BotCommand(command="report", description=" ")])
    await bot.delete_my_commands()
    assert ("default", "") not in tg.commands


# -- flood limits ---------------------------------------------------------------------------


async def test_flood_limit_per_chat_is_enforced_and_counted() -> None:
    clock = FakeClock()
    limits = FloodLimits(per_chat_per_second=1.0, per_chat_burst=3)
    async with TelegramEmulator(token=TOKEN, flood_limits=limits, clock=clock) as tg:
        alice = tg.add_user("Alice", started=True)
        bot = make_bot(tg)
        try:
            outcomes = []
            for i in range(5):  # all at the same instant: a burst of 3 is tolerated
                try:
                    await bot.send_message(alice.id, f"m{i}")
                    outcomes.append("ok")
                except TelegramRetryAfter as error:
                    outcomes.append(f"retry after {error.retry_after}")
            clock.advance(1.0)  # one more token
            await bot.send_message(alice.id, "later")
        finally:
            await close_bot(bot)
    assert outcomes == ["ok", "ok", "ok", "retry after 1", "retry after 1"]
    assert tg.limit_violations == 2
    assert {v.rule for v in tg.violations} == {"chat"}
    assert [m.text for m in tg.sent] == ["m0", "m1", "m2", "later"]


async def test_flood_limits_count_only_group_minute_and_global(
    tg: TelegramEmulator, bot: Bot
) -> None:
    clock = FakeClock()
    tg.clock = clock
    tg.flood_limits = FloodLimits(per_group_per_minute=20, per_second=30, enforce=False)
    alice = tg.add_user("Alice")
    group = tg.add_group("协调群", members=[alice])
    for i in range(21):  # one per 1.5 s: fine per chat, too many per minute in a group
        await bot.send_message(group.id, f"g{i}")
        clock.advance(1.5)
    assert len(tg.sent) == 21  # counted, not enforced
    assert [(v.rule, v.retry_after) for v in tg.violations] == [("group", 30)]

    clock.advance(60)
    people = [tg.add_user(f"P{i}", started=True) for i in range(31)]
    for person in people:  # 31 chats within one second: one over the global limit
        await bot.send_message(person.id, "broadcast")
    assert [v.rule for v in tg.violations] == ["group", "global"]
    assert tg.limit_violations == 2


# -- raw HTTP -------------------------------------------------------------------------------


async def test_envelopes_for_unknown_token_and_method(tg: TelegramEmulator) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{tg.base_url}/bot1:wrong/getMe") as response:
            assert response.status == 401
            assert await response.json() == {
                "ok": False,
                "error_code": 401,
                "description": "Unauthorized",
            }
        async with http.post(f"{tg.base_url}/bot{TOKEN}/sendTelepathy") as response:
            assert response.status == 404
            assert await response.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found",
            }
        async with http.get(f"{tg.base_url}/bot{TOKEN}/getme") as response:  # names ignore case
            me = (await response.json())["result"]
            assert me["username"] == BOT_USERNAME
            assert me["can_read_all_group_messages"] is False


async def test_json_body_is_accepted(tg: TelegramEmulator) -> None:
    alice = tg.add_user("Alice", started=True)
    payload = {
        "chat_id": alice.id,
        "text": "<i>json</i>",
        "parse_mode": "HTML",
        "reply_markup": {"inline_keyboard": [[{"text": "a", "callback_data": "a"}]]},
    }
    url = f"{tg.base_url}/bot{TOKEN}/sendMessage"
    async with aiohttp.ClientSession() as http, http.post(url, json=payload) as response:
        body = await response.json()
    assert body["ok"] is True
    assert body["result"]["entities"] == [{"offset": 0, "length": 4, "type": "italic"}]
    assert tg.sent[0].callback_data == ["a"]


async def test_wrong_token_in_aiogram_raises_unauthorized(tg: TelegramEmulator) -> None:
    stranger = Bot(
        "999:OTHER", session=AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url))
    )
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await stranger.get_me()
    finally:
        await close_bot(stranger)


async def test_second_poller_conflicts_and_stop_releases_long_poll() -> None:
    tg = TelegramEmulator(token=TOKEN)
    await tg.start()
    url = f"{tg.base_url}/bot{TOKEN}/getUpdates"
    async with aiohttp.ClientSession() as http:

        async def poll() -> dict:
            async with http.post(url, data={"timeout": "30"}) as response:
                return await response.json()

        first = asyncio.create_task(poll())
        await tg.wait_polling()
        second = asyncio.create_task(poll())
        assert (await first)["error_code"] == 409  # terminated by the newer request
        await tg.wait_polling()
        # asyncio.timeout guards against hanging; it is not a timing assertion.
        async with asyncio.timeout(5):
            await tg.stop()
            assert await second == {"ok": True, "result": []}


def test_api_error_envelope() -> None:
    error = ApiError(429, "Too Many Requests: retry after 3", {"retry_after": 3})
    assert error.to_json()["parameters"] == {"retry_after": 3}
