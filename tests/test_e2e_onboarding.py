"""Onboarding end to end: the bot as `duban run` builds it, long polling the Telegram emulator.

An invitation made with the CLI (a separate process beside the bot, as in production) or with
/invite is opened through its deep link; used, expired and forged tokens are refused; /grant
lets someone invite; /bindgroup binds a group, which stays bound when it becomes a supergroup;
/unbind turns a liaison back into a guest. In Chinese and in English.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import onboarding
from bot.app import create_app
from bot.people import Access, resolve_actor
from bot.plan_model import ParsedPlan
from bot.settings import Settings, load_settings
from storage.deliveries import DeliveryKind, DeliveryStatus
from storage.models import Delivery, InviteToken, Liaison
from storage.plans import import_plan
from telegram_emulator import BotMessage, EmulatedUser, TelegramEmulator
from tests.emulator_fixtures import BOT_USERNAME, polling, tg_fixture  # noqa: F401

ADMIN = 9001
REPO = Path(__file__).resolve().parent.parent
_LINK = re.compile(rf"https://t\.me/{BOT_USERNAME}\?start=([A-Za-z0-9_-]+)")
_START = re.compile(r"/start ([A-Za-z0-9_-]+)")


@pytest.fixture
async def settings(db: str, tg: TelegramEmulator, sample_plan: ParsedPlan) -> Settings:
    await import_plan(sample_plan, "1" * 64)
    return load_settings(
        database_url=db,
        admin_ids=str(ADMIN),
        telegram_api_url=tg.base_url,
        bot_token=tg.token,
        timezone="Asia/Shanghai",
        coordinator_chat_id="",
    )


@pytest.fixture
async def running(settings: Settings, tg: TelegramEmulator) -> AsyncIterator[TelegramEmulator]:
    bot, dispatcher = create_app(settings)
    async with polling(dispatcher, bot, tg):
        yield tg


async def ask(tg: TelegramEmulator, who: EmulatedUser, text: str, chat=None) -> BotMessage:
    tg.send_text(who, chat, text)
    return await tg.wait_for_message(chat_id=chat or who)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Until an effect the bot leaves only in the database shows up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


async def duban_cli(settings: Settings, *argv: str) -> tuple[int, str, str]:
    """`duban …` as its own process on the bot's database."""
    env = {**os.environ, "DATABASE_URL": settings.database_url, "TIMEZONE": settings.timezone}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *argv,
        cwd=REPO / "tests", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode, out.decode(), err.decode()


async def test_cli_invitation_deep_link_and_refusals_in_chinese(
    running: TelegramEmulator, settings: Settings
):
    tg = running
    # The bot stored its username at start-up, so the CLI prints the deep link.
    code, out, err = await duban_cli(settings, "invite", "县建设局")
    assert code == 0, err
    token = _LINK.search(out).group(1)
    assert f"/start {token}" in out

    zhang = tg.add_user("张三", language_code="zh")
    tg.press_start(zhang, token)  # what opening https://t.me/duban_bot?start=TOKEN does
    greeting = await tg.wait_for_message(chat_id=zhang)
    assert greeting.text.startswith("欢迎您，张三！您已成为县建设局的主联络员。")
    assert "2.1.3 推动城市有机更新（牵头）" in greeting.text
    assert "2.1.1 优化全域发展布局（配合）" in greeting.text
    assert (await resolve_actor(zhang.id, "张三", (ADMIN,))).access is Access.LIAISON

    # The same token again, by someone else: refused, nothing bound.
    li = tg.add_user("李四", language_code="zh")
    tg.press_start(li, token)
    assert "该邀请已被使用" in (await tg.wait_for_message(chat_id=li)).text
    # Expired.
    expired = await onboarding.create_invitation(
        "县民政局", now=datetime.now(UTC) - timedelta(days=8)
    )
    tg.press_start(li, expired.token)
    assert "过期" in (await tg.wait_for_message(chat_id=li)).text
    # Forged, with HTML in it.
    tg.send_text(li, None, "/start <b>forged</b>&")
    refused = await tg.wait_for_message(chat_id=li)
    assert refused.text.startswith("该邀请无效")
    assert await Liaison.get_or_none(telegram_user_id=li.id) is None
    who = await ask(tg, li, "/whoami")
    assert "访客" in who.text

    # The same update delivered twice binds once and greets again, without a crash.
    token = (await onboarding.create_invitation("县民政局")).token
    update = tg.press_start(li, token)
    assert "县民政局" in (await tg.wait_for_message(chat_id=li)).text
    tg.deliver_raw({"update_id": tg.updates[-1]["update_id"], "message": update})
    again = await tg.wait_for_message(chat_id=li)
    assert "您已是县民政局的主联络员" in again.text
    assert await Liaison.filter(telegram_user_id=li.id, active=True).count() == 1


async def test_invite_grant_and_deputies_in_english(running: TelegramEmulator):
    tg = running
    admin = tg.add_user("Chief", user_id=ADMIN, language_code="en", started=True)

    reply = await ask(tg, admin, "/invite 县建设局")
    token = _LINK.search(reply.text).group(1)
    assert f"/start {token}" in reply.text
    assert "single use" in reply.text

    lead = tg.add_user("Zhang", language_code="en")
    tg.press_start(lead, token)
    greeting = await tg.wait_for_message(chat_id=lead)
    assert greeting.text.startswith("Welcome, Zhang! You are now the lead liaison of 县建设局.")
    assert "2.1.3 推动城市有机更新 (lead)" in greeting.text
    # The coordinator is told, in their /lang choice, else DEFAULT_LOCALE (zh): a notification
    # does not know the reader's Telegram language.
    told = await tg.wait_for_message(chat_id=admin)
    assert told.text == f"Zhang（{lead.id}）已通过您的邀请加入县建设局，担任主联络员。"
    # It went through the ledger and the one sender (bot.notices), not straight from the handler.
    await eventually(
        lambda: Delivery.filter(
            kind=DeliveryKind.NOTIFICATION, chat_id=ADMIN, status=DeliveryStatus.SENT
        ).exists()
    )
    row = await Delivery.get(kind=DeliveryKind.NOTIFICATION, chat_id=ADMIN)
    assert row.message_id == told.message_id

    # A coordinator opening an invitation keeps it for the liaison.
    reply = await ask(tg, admin, "/invite 县建设局")
    token = _START.search(reply.text).group(1)
    tg.press_start(admin, token)
    assert "was not used" in (await tg.wait_for_message(chat_id=admin)).text

    # A guest cannot invite; once granted, they can.
    helper = tg.add_user("Helper", language_code="en", started=True)
    assert (await ask(tg, helper, "/invite 县建设局")).text == (
        "Only coordinators can use this command."
    )
    granted = await ask(tg, admin, f"/grant {helper.id}")
    assert granted.text == f"{helper.id} is now a coordinator."
    assert "/help" in (await tg.wait_for_message(chat_id=helper)).text
    await tg.wait_until(lambda: (f"chat:{helper.id}", "en") in tg.commands)
    reply = await ask(tg, helper, "/invite 县建设局")
    helper_token = _START.search(reply.text).group(1)

    deputy = tg.add_user("Li", language_code="en")
    tg.press_start(deputy, token)  # the token the coordinator left unused
    greeting = await tg.wait_for_message(chat_id=deputy)
    assert "deputy liaison of 县建设局; the lead liaison is Zhang" in greeting.text
    assert "担任副联络员" in (await tg.wait_for_message(chat_id=admin)).text

    # /revoke: the helper cannot invite any more, and their open invitation stops working.
    revoked = await ask(tg, admin, f"/revoke {helper.id}")
    assert revoked.text == (
        f"{helper.id} is no longer a coordinator.\nTheir open invitations (1) no longer work."
    )
    await tg.wait_until(lambda: (f"chat:{helper.id}", "en") not in tg.commands)
    # Told unprompted in their Telegram language (English; they chose no /lang).
    assert (
        "coordinator rights have been withdrawn" in (await tg.wait_for_message(chat_id=helper)).text
    )
    assert (await ask(tg, helper, "/invite 县建设局")).text == (
        "Only coordinators can use this command."
    )
    third = tg.add_user("Wang", language_code="zh")
    tg.press_start(third, helper_token)
    refusal = (await tg.wait_for_message(chat_id=third)).text
    assert refusal.startswith("该邀请已于") and refusal.endswith("过期，请向督办人员索取新的邀请。")
    assert await Liaison.get_or_none(telegram_user_id=third.id) is None
    unused = await InviteToken.get(used_at__isnull=True)  # kept, as history
    assert unused.created_by == helper.id and unused.revoked_at is not None
    # ADMIN_IDS cannot be revoked.
    reply = await ask(tg, admin, f"/revoke {ADMIN}")
    assert "ADMIN_IDS" in reply.text
    # By now the refused start has long been handled: its creator heard nothing of it.
    assert not [m for m in tg.sent if m.chat_id == helper.id and "Wang" in (m.text or "")]


async def test_bindgroup_upgrade_and_unbind(running: TelegramEmulator, settings: Settings):
    tg = running
    admin = tg.add_user("督办", user_id=ADMIN, language_code="zh", started=True)
    zhang = tg.add_user("张三", language_code="zh")
    li = tg.add_user("李四", language_code="en")
    for person in (zhang, li):
        invitation = await onboarding.create_invitation("县建设局", created_by=ADMIN)
        tg.press_start(person, invitation.token)
        await tg.wait_for_message(chat_id=person)
        await tg.wait_for_message(chat_id=admin)  # "… joined with your invitation"

    group = tg.add_group("城镇化工作专班", members=[zhang, li], admins=[admin])
    reply = await ask(tg, admin, "/bindgroup")
    assert "在要设为协调群的群里" in reply.text
    refused = await ask(tg, zhang, "/bindgroup", chat=group)
    assert refused.text == "只有督办人员可以使用此命令。"
    bound = await ask(tg, admin, "/bindgroup", chat=group)
    assert bound.text.startswith("本群已设为协调群")
    assert await onboarding.coordination_chat_id(settings) == group.id

    supergroup = tg.upgrade_group(group)

    async def moved() -> bool:
        return await onboarding.coordination_chat_id(settings) == supergroup.id

    await eventually(moved)

    # /unbind by replying to the liaison's message in the group.
    message = tg.send_text(zhang, supergroup, "/whoami")
    await tg.wait_for_message(chat_id=supergroup)
    tg.send_text(admin, supergroup, "/unbind", reply_to=message)
    done = await tg.wait_for_message(chat_id=supergroup)
    assert "张三" in done.text and "已不再担任县建设局的联络员" in done.text
    assert "现为县建设局的主联络员" in done.text  # 李四 takes over
    assert "感谢" in (await tg.wait_for_message(chat_id=zhang)).text
    assert "您现为县建设局的主联络员" in (await tg.wait_for_message(chat_id=li)).text
    who = await ask(tg, zhang, "/whoami")
    assert "访客" in who.text
    assert await Liaison.filter(active=True).count() == 1
