"""/start TOKEN, /invite, /grant, /revoke, /unbind and /bindgroup through the real dispatcher."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from aiogram.methods import DeleteMyCommands, SendMessage, SetMyCommands
from aiogram.types import Message, User

from bot import onboarding
from bot.app import build_dispatcher
from bot.people import Access, resolve_actor
from bot.plan_model import ParsedPlan
from bot.settings import load_settings
from storage.models import Delivery, DeliveryKind, InviteToken, Liaison
from storage.plans import import_plan
from tests.delivery_support import notifications
from tests.handler_support import group_chat, message_update, private_chat, user
from tests.mocked_bot import BOT_USERNAME, MockedBot

ADMIN = 9001
GROUP = group_chat(-100777, "城镇化工作专班")
_TOKEN = re.compile(r"/start ([A-Za-z0-9_-]+)")


@pytest.fixture
async def dispatcher(db: str, sample_plan: ParsedPlan):
    await import_plan(sample_plan, "1" * 64)
    return build_dispatcher(
        load_settings(database_url=db, admin_ids=str(ADMIN), coordinator_chat_id="-100555")
    )


@pytest.fixture
def bot() -> MockedBot:
    return MockedBot()


async def _send(dispatcher, bot: MockedBot, update) -> list[SendMessage]:
    """Feed one update; the messages the bot sent for it, in order."""
    bot.session.requests.clear()
    await dispatcher.feed_update(bot, update)
    return [r for r in bot.session.requests if isinstance(r, SendMessage)]


async def _reply(dispatcher, bot: MockedBot, update) -> str:
    sent = await _send(dispatcher, bot, update)
    assert sent, "the bot did not answer"
    return sent[0].text


async def _invite(dispatcher, bot: MockedBot, department: str = "县建设局") -> str:
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), f"/invite {department}"))
    return _TOKEN.search(text).group(1)


def _user_message(sender: User, chat, text: str = "你好") -> Message:
    return Message(message_id=77, date=datetime.now(UTC), chat=chat, from_user=sender, text=text)


async def test_invite_then_start_token_binds_and_greets_in_chinese(dispatcher, bot):
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/invite 县建设局"))
    token = _TOKEN.search(text).group(1)
    assert f"https://t.me/{BOT_USERNAME}?start={token}" in text
    assert "县建设局" in text and "仅限使用一次" in text

    liaison = user(501, "张三", language_code="zh")
    sent = await _send(dispatcher, bot, message_update(liaison, f"/start {token}"))
    greeting = sent[0].text
    assert "欢迎您，张三！您已成为县建设局的主联络员。" in greeting
    assert "<code>2.1.3</code> 推动城市有机更新（牵头）" in greeting
    assert "<code>2.1.1</code> 优化全域发展布局（配合）" in greeting
    assert "/report" in greeting
    # The coordinator who made the invitation is told, through the ledger (bot.notices).
    assert [m.chat_id for m in sent] == [501]
    assert [
        (chat, "张三" in text and "主联络员" in text)
        for chat, text in await notifications(dispatcher)
    ] == [(ADMIN, True)]
    actor = await resolve_actor(501, "张三", (ADMIN,))
    assert actor.access is Access.LIAISON and actor.department_name == "县建设局"

    # A second liaison is a deputy and is told who leads.
    token = await _invite(dispatcher, bot)
    deputy = user(502, "Li Si", language_code="en")
    text = await _reply(dispatcher, bot, message_update(deputy, f"/start {token}"))
    assert "Welcome, Li Si! You are now a deputy liaison of 县建设局" in text
    assert "the lead liaison is 张三" in text
    assert "<code>2.1.3</code> 推动城市有机更新 (lead)" in text


async def test_used_expired_forged_and_group_tokens_are_refused(dispatcher, bot):
    token = await _invite(dispatcher, bot)
    await _send(dispatcher, bot, message_update(user(501), f"/start {token}"))
    text = await _reply(dispatcher, bot, message_update(user(502), f"/start {token}"))
    assert "已被使用" in text
    text = await _reply(
        dispatcher, bot, message_update(user(502, language_code="en"), f"/start {token}")
    )
    assert "already been used" in text

    expired = await onboarding.create_invitation(
        "县民政局", now=datetime.now(UTC) - timedelta(days=8)
    )
    text = await _reply(dispatcher, bot, message_update(user(502), f"/start {expired.token}"))
    assert "已于" in text and "过期" in text

    for forged in ("not-a-real-token", "<b>x</b>", "邀请码"):  # another person: 5 failures max
        text = await _reply(dispatcher, bot, message_update(user(504), f"/start {forged}"))
        assert "该邀请无效" in text
        assert "<b>" not in text

    # In a group: refused, and the token still works in private.
    token = await _invite(dispatcher, bot, "县民政局")
    text = await _reply(dispatcher, bot, message_update(user(503), f"/start {token}", chat=GROUP))
    assert "私聊" in text
    assert await Liaison.get_or_none(telegram_user_id=502) is None
    text = await _reply(dispatcher, bot, message_update(user(503), f"/start {token}"))
    assert "县民政局" in text and "主联络员" in text


async def test_a_coordinator_opening_an_invitation_stays_a_coordinator(dispatcher, bot):
    token = await _invite(dispatcher, bot)
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), f"/start {token}"))
    assert "督办人员" in text and "未被使用" in text
    assert (await InviteToken.get()).used_at is None
    # Plain /start still belongs to handlers.common.
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/start"))
    assert text.startswith("你好")


async def test_invite_refusals_and_bad_arguments(dispatcher, bot):
    text = await _reply(dispatcher, bot, message_update(user(501), "/invite 县建设局"))
    assert text == "只有督办人员可以使用此命令。"
    text = await _reply(
        dispatcher, bot, message_update(user(ADMIN), "/invite 县建设局", chat=GROUP)
    )
    assert "私聊" in text
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/invite"))
    assert text.startswith("用法：/invite")
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/invite 建设"))
    assert "没有名为“建设”的单位" in text and "<code>/invite 县建设局</code>" in text
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/invite <b>&"))
    assert "&lt;b&gt;&amp;" in text
    english = user(ADMIN, language_code="en")
    text = await _reply(dispatcher, bot, message_update(english, "/invite nowhere"))
    assert "No department is called “nowhere”." in text and "/dept" in text
    assert await InviteToken.all().count() == 0
    # "lead" at the end: the invitee becomes the lead liaison.
    text = await _reply(dispatcher, bot, message_update(english, "/invite 文明办 lead"))
    assert "Invitation to join 县委宣传部" in text and "becomes the lead liaison" in text
    assert (await InviteToken.get()).as_lead


async def test_grant_by_reply_and_revoke(dispatcher, bot):
    colleague = User(id=601, is_bot=False, first_name="王", last_name="五", username="wangwu")
    replied = _user_message(colleague, GROUP)
    sent = await _send(
        dispatcher, bot, message_update(user(ADMIN), "/grant", chat=GROUP, reply_to_message=replied)
    )
    assert sent[0].chat_id == GROUP.id
    assert sent[0].text == "王 五（<code>601</code>）已成为督办人员。"
    assert len(sent) == 1  # the new coordinator is told through the ledger
    ((chat, told),) = await notifications(dispatcher)
    assert chat == 601 and "/help" in told
    menus = [r for r in bot.session.requests if isinstance(r, SetMyCommands)]
    assert {r.scope.chat_id for r in menus} == {601}
    assert "invite" in {c.command for c in menus[0].commands}
    # The new coordinator can invite now.
    text = await _reply(dispatcher, bot, message_update(user(601), "/invite 县建设局"))
    assert "/start " in text

    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/grant 601"))
    assert "已经是督办人员" in text
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/revoke 601"))
    # The invitation 601 made above stops working with their rights.
    assert text == "王 五（<code>601</code>）已不再是督办人员。\n其发出的未使用邀请（1个）已失效。"
    assert [chat for chat, _ in await notifications(dispatcher)] == [601]
    assert any(isinstance(r, DeleteMyCommands) for r in bot.session.requests)
    text = await _reply(dispatcher, bot, message_update(user(601), "/invite 县建设局"))
    assert text == "只有督办人员可以使用此命令。"
    # ADMIN_IDS cannot be revoked; the answer says why.
    text = await _reply(
        dispatcher, bot, message_update(user(ADMIN, language_code="en"), f"/revoke {ADMIN}")
    )
    assert "ADMIN_IDS" in text and "restart" in text


async def test_grant_and_revoke_bad_arguments(dispatcher, bot):
    text = await _reply(dispatcher, bot, message_update(user(501), "/grant 502"))
    assert text == "只有督办人员可以使用此命令。"
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/grant"))
    assert text.startswith("用法：/grant")
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/grant 张三<b>"))
    assert "不是 Telegram 用户 ID" in text and "&lt;b&gt;" in text
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/grant -100"))
    assert "不是 Telegram 用户 ID" in text
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/grant @someone_new"))
    assert "还不认识" in text
    bot_user = User(id=4242, is_bot=True, first_name="OtherBot")
    text = await _reply(
        dispatcher,
        bot,
        message_update(
            user(ADMIN), "/grant", chat=GROUP, reply_to_message=_user_message(bot_user, GROUP)
        ),
    )
    assert "机器人" in text
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/revoke 12345"))
    assert "不是督办人员" in text
    assert await Liaison.all().count() == 0


async def test_unbind(dispatcher, bot):
    token = await _invite(dispatcher, bot)
    await _send(dispatcher, bot, message_update(user(501, "张三"), f"/start {token}"))
    token = await _invite(dispatcher, bot)
    await _send(dispatcher, bot, message_update(user(502, "李四"), f"/start {token}"))

    text = await _reply(dispatcher, bot, message_update(user(502), "/unbind 501"))
    assert text == "只有督办人员可以使用此命令。"
    sent = await _send(dispatcher, bot, message_update(user(ADMIN), "/unbind 501"))
    assert "张三（<code>501</code>）已不再担任县建设局的联络员" in sent[0].text
    assert "（0条）" in sent[0].text
    assert "李四（<code>502</code>）现为县建设局的主联络员" in sent[0].text
    assert len(sent) == 1
    told = dict(await notifications(dispatcher))
    assert "感谢" in told[501] and "主联络员" in told[502]
    assert (await resolve_actor(501, "张三", (ADMIN,))).access is Access.GUEST

    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/unbind 501"))
    assert "不是在任联络员" in text
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/unbind 99999"))
    assert "找不到" in text
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), f"/unbind {ADMIN}"))
    assert "/revoke" in text
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/unbind abc"))
    assert "不是 Telegram 用户 ID" in text


async def test_role_notices_are_ledger_rows_in_the_recipients_language(dispatcher, bot):
    token = await _invite(dispatcher, bot)
    wang = user(503, "Wang", language_code="en")
    await _send(dispatcher, bot, message_update(wang, f"/start {token}"))
    await _send(dispatcher, bot, message_update(wang, "/whoami"))  # their Telegram language kept
    await notifications(dispatcher)  # the inviter's notice
    update = message_update(user(ADMIN), "/unbind 503")
    sent = await _send(dispatcher, bot, update)
    assert [m.chat_id for m in sent] == [ADMIN]  # the answer; the notice waits in the ledger
    row = await Delivery.get(kind=DeliveryKind.NOTIFICATION, chat_id=503)
    assert row.key == f"notice:liaison-ended:m{ADMIN}.{update.message.message_id}:503"
    # Rendered when sent, in the Telegram language stored for them (no /lang chosen)...
    assert await notifications(dispatcher, settle=False) == [
        (503, "You are no longer a liaison of 县建设局. Thank you for your work!")
    ]
    # ...and in their /lang choice once they have made one.
    await Liaison.filter(telegram_user_id=503).update(locale="zh")
    ((_, text),) = await notifications(dispatcher)
    assert text.startswith("您已不再担任县建设局的联络员")


async def test_bindgroup(dispatcher, bot):
    settings = load_settings(coordinator_chat_id="-100555")
    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/bindgroup"))
    assert "在要设为协调群的群里" in text
    text = await _reply(dispatcher, bot, message_update(user(501), "/bindgroup", chat=GROUP))
    assert text == "只有督办人员可以使用此命令。"
    assert await onboarding.coordination_chat_id(settings) == -100555

    text = await _reply(dispatcher, bot, message_update(user(ADMIN), "/bindgroup", chat=GROUP))
    assert "本群已设为协调群" in text and "-100555" in text
    assert await onboarding.coordination_chat_id(settings) == GROUP.id
    english = user(ADMIN, language_code="en")
    text = await _reply(dispatcher, bot, message_update(english, "/bindgroup", chat=GROUP))
    assert text == "This group already is the coordination group."

    # Posting anonymously as the group: nobody to check.
    anonymous = User(id=1087968824, is_bot=True, first_name="Group", username="GroupAnonymousBot")
    text = await _reply(dispatcher, bot, message_update(anonymous, "/bindgroup", chat=GROUP))
    assert "匿名" in text

    # The group becomes a supergroup: the coordination group follows.
    await _send(
        dispatcher,
        bot,
        message_update(user(ADMIN), "", chat=GROUP, migrate_to_chat_id=-100888),
    )
    assert await onboarding.coordination_chat_id(settings) == -100888


async def test_everyone_sees_refusals_in_english_too(dispatcher, bot):
    english = user(501, language_code="en")
    for command in ("/invite 县建设局", "/grant 1", "/revoke 1", "/unbind 1"):
        text = await _reply(dispatcher, bot, message_update(english, command))
        assert text == "Only coordinators can use this command.", command
    text = await _reply(dispatcher, bot, message_update(english, "/start bogus"))
    assert text.startswith("This invitation is not valid.")
    text = await _reply(
        dispatcher, bot, message_update(english, "/bindgroup", chat=private_chat(english))
    )
    assert text == "Only coordinators can use this command."
