"""Authorization edges: revoked coordinators, bare commands in forum topics, the attempt limit
on `/start TOKEN`. Services on SQLite and PostgreSQL (the `db` fixture), handlers through the
real dispatcher with the mocked bot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiogram.methods import SendMessage
from aiogram.types import Update

from bot import onboarding
from bot.app import build_dispatcher
from bot.notices import NoticeEvent, person_notice
from bot.onboarding import PersonRef, RedeemOutcome, RevokeOutcome
from bot.people import Access, resolve_actor
from bot.plan_model import ParsedPlan
from bot.settings import load_settings
from storage.deliveries import NewDelivery, enqueue
from storage.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    InviteToken,
    Liaison,
)
from storage.plans import import_plan
from tests.delivery_support import notifications
from tests.handler_support import message_update, user
from tests.mocked_bot import MockedBot

ADMIN = 9001
HELPER = 601  # a coordinator made with /grant
NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
FORUM = {"id": -1001971186208, "title": "城镇化工作专班", "is_forum": True, "type": "supergroup"}


@pytest.fixture
async def plan(db: str, sample_plan: ParsedPlan) -> None:
    await import_plan(sample_plan, "1" * 64)


@pytest.fixture
async def dispatcher(db: str, plan: None):
    return build_dispatcher(load_settings(database_url=db, admin_ids=str(ADMIN)))


@pytest.fixture
def bot() -> MockedBot:
    return MockedBot()


async def _send(dispatcher, bot: MockedBot, update: Update) -> list[SendMessage]:
    bot.session.requests.clear()
    await dispatcher.feed_update(bot, update)
    return [r for r in bot.session.requests if isinstance(r, SendMessage)]


async def _redeem(token: str, user_id: int, now: datetime = NOW):
    return await onboarding.redeem_invitation(
        token, user_id=user_id, full_name=f"用户{user_id}", now=now
    )


async def _invite(created_by: int | None, department: str = "县建设局", now: datetime = NOW):
    return (await onboarding.create_invitation(department, created_by=created_by, now=now)).token


# Revoking a coordinator --------------------------------------------------------------------------


async def test_revoking_a_coordinator_revokes_their_open_invitations(plan: None) -> None:
    now = datetime.now(UTC)  # revoke() stamps the real time
    await onboarding.grant(HELPER, full_name="王五", admin_ids=(ADMIN,))
    open_tokens = [await _invite(HELPER, now=now), await _invite(HELPER, "县民政局", now=now)]
    used = await _invite(HELPER, now=now)
    assert (await _redeem(used, 701, now=now)).outcome is RedeemOutcome.BOUND
    expired = await _invite(HELPER, now=now - timedelta(days=30))
    admins = await _invite(ADMIN, "县民政局", now=now)

    result = await onboarding.revoke(HELPER, by=ADMIN, admin_ids=(ADMIN,))
    assert result.outcome is RevokeOutcome.REVOKED

    later = datetime.now(UTC)
    for token in open_tokens:
        refused = await _redeem(token, 702, now=later)
        # Answered like an expired invitation, dated when it stopped working.
        assert refused.outcome is RedeemOutcome.EXPIRED
        assert now <= refused.result.expires_at <= later
    assert await Liaison.get_or_none(telegram_user_id=702) is None
    assert result.invitations == 2
    # History stays: every row is kept; only the open ones are marked, with their own expiry.
    rows = {row.token_sha256: row for row in await InviteToken.all()}
    assert len(rows) == 5
    for token in open_tokens:
        row = rows[onboarding.token_digest(token)]
        assert row.used_at is None and now <= row.revoked_at <= later
        assert row.expires_at == now + timedelta(days=7)
    assert rows[onboarding.token_digest(used)].revoked_at is None
    assert rows[onboarding.token_digest(expired)].revoked_at is None
    # Another coordinator's invitation is untouched.
    assert (await _redeem(admins, 703, now=later)).outcome is RedeemOutcome.BOUND


async def test_a_revoked_coordinator_gets_no_more_coordinator_notices(plan: None) -> None:
    await onboarding.grant(HELPER, full_name="王五", admin_ids=(ADMIN,))
    await onboarding.grant(602, full_name="赵六", admin_ids=(ADMIN,))
    assert await onboarding.coordinator_ids((ADMIN,)) == {ADMIN, HELPER, 602}
    notices = [
        NewDelivery(
            kind=DeliveryKind.NOTICE,
            key=f"unreachable:555>{chat}",
            chat_id=chat,
            due_at=NOW,
            payload={"reason": "unreachable", "chat_id": 555},
        )
        for chat in (ADMIN, HELPER, 602)
    ]
    assert await enqueue(notices) == 3
    # And a notification for them as a coordinator: someone joined with their invitation.
    helper = PersonRef(HELPER, "王五", None)
    joined = {"who_id": 701, "who_name": "张三", "department": "县建设局"}
    invited = person_notice(
        NoticeEvent.INVITE_USED_LEAD, helper, origin="m1.1", now=NOW, default_locale="zh", **joined
    )
    assert await enqueue(invited) == 1

    result = await onboarding.revoke(HELPER, by=ADMIN, admin_ids=(ADMIN,))
    assert result.outcome is RevokeOutcome.REVOKED
    # What was already queued for them is cancelled; the others still go out.
    status = dict(await Delivery.filter(kind=DeliveryKind.NOTICE).values_list("chat_id", "status"))
    assert status == {
        ADMIN: DeliveryStatus.PENDING,
        HELPER: DeliveryStatus.CANCELLED,
        602: DeliveryStatus.PENDING,
    }
    notification = await Delivery.get(kind=DeliveryKind.NOTIFICATION)
    assert notification.status == DeliveryStatus.CANCELLED
    # The list of coordinators new notices go to (ADMIN_IDS plus granted) leaves them out.
    assert await onboarding.coordinator_ids((ADMIN,)) == {ADMIN, 602}


async def test_revoke_of_a_configured_admin_changes_nothing(plan: None) -> None:
    token = await _invite(ADMIN, now=datetime.now(UTC))
    await onboarding.grant(HELPER, admin_ids=(ADMIN,))
    result = await onboarding.revoke(ADMIN, by=HELPER, admin_ids=(ADMIN,))
    # Still a coordinator by ADMIN_IDS, so their invitations keep working.
    assert result.outcome is RevokeOutcome.CONFIGURED and result.invitations == 0
    assert (await InviteToken.get()).revoked_at is None
    assert (await _redeem(token, 701, now=datetime.now(UTC))).outcome is RedeemOutcome.BOUND


async def test_revoke_in_chat_says_so_and_the_invitation_is_refused_like_an_expired_one(
    dispatcher, bot
) -> None:
    await onboarding.grant(HELPER, full_name="王五", admin_ids=(ADMIN,))
    token = await _invite(HELPER, now=datetime.now(UTC))
    sent = await _send(dispatcher, bot, message_update(user(ADMIN), f"/revoke {HELPER}"))
    assert (
        sent[0].text
        == "王五（<code>601</code>）已不再是督办人员。\n其发出的未使用邀请（1个）已失效。"
    )
    assert len(sent) == 1  # the person is told through the ledger
    # told once, that their rights are gone
    assert [chat for chat, text in await notifications(dispatcher) if "督办" in text] == [HELPER]

    sent = await _send(dispatcher, bot, message_update(user(701, "张三"), f"/start {token}"))
    assert len(sent) == 1 and sent[0].chat_id == 701  # its creator hears nothing
    assert await notifications(dispatcher) == []
    assert sent[0].text.startswith("该邀请已于") and "过期" in sent[0].text
    english = user(702, "Li", language_code="en")
    sent = await _send(dispatcher, bot, message_update(english, f"/start {token}"))
    assert sent[0].text.startswith("This invitation expired on ")
    assert await Liaison.filter(telegram_user_id__in=(701, 702)).count() == 0


# Bare commands in a forum topic ------------------------------------------------------------------


def _topic_update(text: str, *, reply_to: dict | None = None) -> Update:
    """What Telegram sends for `text` posted by ADMIN in a forum topic that HELPER created.

    Without an explicit reply, Telegram still fills `reply_to_message`: with the service
    message that created the topic (its id is the message_thread_id)."""
    root = {
        "message_id": 5341,
        "from": {"id": HELPER, "is_bot": False, "first_name": "王", "last_name": "五"},
        "chat": FORUM,
        "date": 1765150000,
        "message_thread_id": 5341,
        "forum_topic_created": {"name": "进度报送", "icon_color": 7322096},
        "is_topic_message": True,
    }
    message = {
        "message_id": 5350,
        "from": {"id": ADMIN, "is_bot": False, "first_name": "督办", "language_code": "zh"},
        "chat": FORUM,
        "date": 1765150100,
        "message_thread_id": 5341,
        "reply_to_message": reply_to or root,
        "text": text,
        "entities": [
            {"offset": 0, "length": len(text.split(maxsplit=1)[0]), "type": "bot_command"}
        ],
        "is_topic_message": True,
    }
    return Update.model_validate({"update_id": 291368968, "message": message})


async def test_bare_commands_in_a_forum_topic_name_nobody(dispatcher, bot) -> None:
    for command, usage in [
        ("/grant", "用法：/grant"),
        ("/grant@duban_bot", "用法：/grant"),
        ("/unbind", "用法：/unbind"),
        ("/revoke", "用法：/revoke"),
    ]:
        sent = await _send(dispatcher, bot, _topic_update(command))
        assert len(sent) == 1 and sent[0].text.startswith(usage), command
    # The topic's creator was neither made a coordinator nor touched in any way.
    assert await Liaison.get_or_none(telegram_user_id=HELPER) is None
    assert (await resolve_actor(HELPER, "王五", (ADMIN,))).access is Access.GUEST


async def test_an_explicit_reply_in_a_forum_topic_names_that_person(dispatcher, bot) -> None:
    theirs = {
        "message_id": 5348,
        "from": {"id": 602, "is_bot": False, "first_name": "赵", "last_name": "六"},
        "chat": FORUM,
        "date": 1765150050,
        "message_thread_id": 5341,
        "text": "请给我督办权限",
        "is_topic_message": True,
    }
    sent = await _send(dispatcher, bot, _topic_update("/grant", reply_to=theirs))
    assert sent[0].text == "赵 六（<code>602</code>）已成为督办人员。"
    assert (await resolve_actor(602, "赵六", (ADMIN,))).access is Access.COORDINATOR
    assert await Liaison.get_or_none(telegram_user_id=HELPER) is None


# The attempt limit on /start TOKEN ----------------------------------------------------------------


async def test_failed_attempts_are_limited_per_person_and_the_window_passes(plan: None) -> None:
    from bot.onboarding import INVITE_ATTEMPT_WINDOW  # here: the base commit has neither
    from storage.models import InviteAttempt

    token = await _invite(ADMIN)
    used = await _invite(ADMIN, "县民政局")
    assert (await _redeem(used, 800)).outcome is RedeemOutcome.BOUND
    expired = await _invite(ADMIN, now=NOW - timedelta(days=8))
    bad = ["forged-token-123", "a b", used, expired, "not-it"]
    for minute, attempt in enumerate(bad):  # unknown, malformed, used, expired: all count
        result = await _redeem(attempt, 701, now=NOW + timedelta(minutes=minute))
        assert result.outcome is not RedeemOutcome.LIMITED, attempt

    # A sixth try, even with a valid token, is refused until the first failure is 10 min old.
    late = NOW + timedelta(minutes=9)
    limited = await _redeem(token, 701, now=late)
    assert limited.outcome is RedeemOutcome.LIMITED
    assert limited.result.retry_at == NOW + INVITE_ATTEMPT_WINDOW
    assert (await InviteToken.get(token_sha256=onboarding.token_digest(token))).used_at is None
    assert await Liaison.get_or_none(telegram_user_id=701) is None
    assert await InviteAttempt.filter(telegram_user_id=701).count() == 5  # refusals not counted

    # Someone else under the limit is unaffected.
    for minute in range(4):
        await _redeem("wrong-token", 702, now=NOW + timedelta(minutes=minute))
    other = await _invite(ADMIN, "县民政局")
    assert (await _redeem(other, 702, now=late)).outcome is RedeemOutcome.BOUND

    # Once the oldest failure leaves the window, the valid token works.
    bound = await _redeem(token, 701, now=NOW + INVITE_ATTEMPT_WINDOW)
    assert bound.outcome is RedeemOutcome.BOUND
    # Failures that no longer count are pruned as new ones are recorded.
    await _redeem("wrong-again", 703, now=NOW + timedelta(hours=1))
    assert await InviteAttempt.all().values_list("telegram_user_id", flat=True) == [703]


async def test_successful_and_harmless_openings_do_not_count(plan: None) -> None:
    from storage.models import InviteAttempt

    for _ in range(6):  # a coordinator opening invitations leaves them unused, uncounted
        token = await _invite(ADMIN)
        result = await onboarding.redeem_invitation(
            token, user_id=ADMIN, full_name="督办", is_coordinator=True, now=NOW
        )
        assert result.outcome is RedeemOutcome.COORDINATOR
    token = await _invite(ADMIN)
    assert (await _redeem(token, 701)).outcome is RedeemOutcome.BOUND
    for _ in range(6):  # opening it again: already a member, not a failure
        assert (await _redeem(token, 701)).outcome is RedeemOutcome.ALREADY_MEMBER
    assert await InviteAttempt.all().count() == 0


async def test_the_limit_in_chat_holds_across_a_restart(db: str, plan: None, bot) -> None:
    settings = load_settings(database_url=db, admin_ids=str(ADMIN))
    token = await _invite(ADMIN, now=datetime.now(UTC))
    person = user(701, "张三")
    first = build_dispatcher(settings)
    for attempt in range(5):
        sent = await _send(first, bot, message_update(person, f"/start wrong-{attempt}"))
        assert sent[0].text.startswith("该邀请无效")
    # A new dispatcher, as after a restart: the count is in the database.
    again = build_dispatcher(settings)
    sent = await _send(again, bot, message_update(person, f"/start {token}"))
    assert len(sent) == 1
    assert (
        sent[0].text.startswith("短时间内无效的邀请尝试过多，请于") and "之后再试" in sent[0].text
    )
    english = user(701, "Zhang", language_code="en")
    sent = await _send(again, bot, message_update(english, f"/start {token}"))
    assert sent[0].text.startswith("Too many invitations that did not work in a short time.")
    assert await Liaison.get_or_none(telegram_user_id=701) is None
