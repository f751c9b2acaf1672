"""Onboarding services and their storage: invitations, binding, roles, the coordination group.

Runs on SQLite and PostgreSQL (the `db` fixture); the races use asyncio.gather on one database.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot import onboarding
from bot.onboarding import (
    GrantOutcome,
    InvalidDaysError,
    RedeemOutcome,
    RevokeOutcome,
    UnbindOutcome,
    UnknownDepartmentError,
    closest_names,
)
from bot.people import Access, resolve_actor
from bot.plan_model import ParsedPlan, Role
from bot.settings import load_settings
from storage.enums import LiaisonRole, ReportStatus
from storage.models import BotSetting, InviteToken, Liaison, Report, Task
from storage.onboarding import department_liaisons, find_department_ref
from storage.plans import import_plan

ADMIN = 9001
NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
async def plan(db: str, sample_plan: ParsedPlan) -> None:
    await import_plan(sample_plan, "1" * 64)


async def _invite(department: str = "县建设局", **options: object) -> str:
    invitation = await onboarding.create_invitation(department, now=NOW, **options)
    return invitation.token


async def _redeem(token: str, user_id: int, name: str = "张三", **options: object):
    return await onboarding.redeem_invitation(
        token, user_id=user_id, full_name=name, username=f"u{user_id}", now=NOW, **options
    )


# Pure helpers -----------------------------------------------------------------------------------


def test_tokens_are_random_deep_link_safe_and_hashed() -> None:
    tokens = {onboarding.new_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert onboarding.is_token_shaped(token)
        assert 20 <= len(token) <= 64
    digest = onboarding.token_digest("abc")
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert not onboarding.is_token_shaped("x" * 65)
    assert not onboarding.is_token_shaped("邀请码")
    assert not onboarding.is_token_shaped("a b")
    assert onboarding.deep_link("duban_bot", "T0k-en_") == "https://t.me/duban_bot?start=T0k-en_"


def test_closest_names_prefers_containment_then_similarity() -> None:
    names = {
        "县建设局": "县建设局",
        "县发改局": "县发改局",
        "县委宣传部": "县委宣传部",
        "文明办": "县委宣传部",
        "县民政局": "县民政局",
    }
    assert closest_names("建设", names)[0] == "县建设局"
    assert closest_names("住建局", names)[0] == "县建设局"
    assert closest_names("文明", names) == ["县委宣传部"]
    assert closest_names("", names) == []
    assert closest_names("xyz", names) == []


def test_user_ids_are_positive_numbers_only() -> None:
    assert onboarding.parse_user_id(" 12345 ") == 12345
    for bad in ("", "-5", "0", "12a", "١٢٣", "1" * 30, "@x"):
        assert onboarding.parse_user_id(bad) is None, bad


# Invitations ------------------------------------------------------------------------------------


async def test_creating_invitations(plan: None) -> None:
    invitation = await onboarding.create_invitation("文明办", created_by=ADMIN, now=NOW)
    assert invitation.department == "县委宣传部"  # found by its alias
    assert invitation.expires_at == NOW + timedelta(days=7)
    assert invitation.start_command == f"/start {invitation.token}"
    assert invitation.link(None) is None
    row = await InviteToken.get()
    assert row.token_sha256 == onboarding.token_digest(invitation.token)  # only the hash
    assert (row.created_by, row.used_at, row.as_lead) == (ADMIN, None, False)

    with pytest.raises(UnknownDepartmentError) as error:
        await onboarding.create_invitation("建设", now=NOW)
    assert error.value.suggestions[0] == "县建设局"
    assert error.value.any_departments
    for days in (0, -1, 366):
        with pytest.raises(InvalidDaysError):
            await onboarding.create_invitation("县建设局", days=days)
    assert await InviteToken.all().count() == 1


async def test_redeeming_binds_once_and_lists_the_departments_tasks(plan: None) -> None:
    token = await _invite()
    redemption = await _redeem(token, 501, "张三")
    assert redemption.outcome is RedeemOutcome.BOUND
    assert redemption.result.department.name == "县建设局"
    assert redemption.result.is_lead
    assert [(t.code, t.role) for t in redemption.tasks] == [
        ("2.1.1", Role.SUPPORT),
        ("2.1.3", Role.LEAD),
    ]
    actor = await resolve_actor(501, "张三", (ADMIN,))
    assert actor.access is Access.LIAISON and actor.department_name == "县建设局"
    row = await Liaison.get(telegram_user_id=501)
    assert (row.full_name, row.username, row.bound_at) == ("张三", "u501", NOW)
    invite = await InviteToken.get()
    assert (invite.used_at, invite.used_by) == (NOW, 501)

    again = await _redeem(token, 502, "李四")
    assert again.outcome is RedeemOutcome.USED
    assert await Liaison.get_or_none(telegram_user_id=502) is None


async def test_expired_forged_and_malformed_tokens_bind_nothing(plan: None) -> None:
    token = await _invite(days=1)
    redemption = await onboarding.redeem_invitation(
        token, user_id=501, full_name="张三", now=NOW + timedelta(days=1, seconds=1)
    )
    assert redemption.outcome is RedeemOutcome.EXPIRED
    assert redemption.result.expires_at == NOW + timedelta(days=1)
    assert (await InviteToken.get()).used_at is None
    forged_tokens = ("forged-token-123", token[:-1], "x" * 65, "邀请", "a b", "")
    for sender, forged in enumerate(forged_tokens, start=510):  # one each: under the limit
        assert (await _redeem(forged, sender)).outcome is RedeemOutcome.UNKNOWN, forged
    assert await Liaison.all().count() == 0


async def test_races(plan: None) -> None:
    # Four people, one token: exactly one wins.
    token = await _invite()
    results = await asyncio.gather(*(_redeem(token, 600 + i, f"用户{i}") for i in range(4)))
    outcomes = [result.outcome for result in results]
    assert outcomes.count(RedeemOutcome.BOUND) == 1
    assert outcomes.count(RedeemOutcome.USED) == 3
    assert await Liaison.filter(active=True).count() == 1
    # Three people joining one department at once: one lead.
    tokens = [await _invite("县民政局") for _ in range(3)]
    await asyncio.gather(*(_redeem(token, 700 + i) for i, token in enumerate(tokens)))
    department = await find_department_ref("县民政局")
    liaisons = await department_liaisons(department.id)
    assert len(liaisons) == 3
    assert sum(person.is_lead for person in liaisons) == 1


async def test_lead_and_deputy_liaisons(plan: None) -> None:
    first = await _redeem(await _invite(), 501, "张三")
    second = await _redeem(await _invite(), 502, "李四")
    assert first.result.is_lead
    assert not second.result.is_lead
    assert second.result.lead.full_name == "张三"
    department = await find_department_ref("县建设局")
    liaisons = await department_liaisons(department.id)
    assert [(p.full_name, p.is_lead) for p in liaisons] == [("张三", True), ("李四", False)]
    # An invitation "as lead" makes the former lead a deputy.
    redemption = await _redeem(await _invite(as_lead=True), 503, "王五")
    assert redemption.result.is_lead
    assert redemption.result.replaced_lead.full_name == "张三"
    liaisons = await department_liaisons(department.id)
    assert [(p.full_name, p.is_lead) for p in liaisons] == [
        ("王五", True),
        ("张三", False),
        ("李四", False),
    ]

    # Moving to another department hands the lead over to the earliest deputy.
    await Liaison.create(
        telegram_user_id=801, full_name="x", role=LiaisonRole.OBSERVER, active=False, locale="en"
    )  # a guest who chose a language with /lang
    await _redeem(await _invite("县发改局"), 801, "赵六")
    row = await Liaison.get(telegram_user_id=801)
    assert (row.locale, row.full_name, row.active, row.is_lead) == ("en", "赵六", True, True)
    await _redeem(await _invite("县发改局"), 802, "钱七")
    moved = await _redeem(await _invite("县民政局"), 801, "赵六")
    assert moved.result.previous_department.name == "县发改局"
    assert moved.result.promoted.full_name == "钱七"
    assert moved.result.department.name == "县民政局" and moved.result.is_lead
    reform = await find_department_ref("县发改局")
    assert [(p.full_name, p.is_lead) for p in await department_liaisons(reform.id)] == [
        ("钱七", True)
    ]


async def test_tokens_offered_to_coordinators_or_members_stay_valid(plan: None) -> None:
    token = await _invite()
    redemption = await _redeem(token, ADMIN, is_coordinator=True)
    assert redemption.outcome is RedeemOutcome.COORDINATOR
    assert redemption.result.department.name == "县建设局"
    # A granted coordinator is caught by the storage layer too.
    await onboarding.grant(502, full_name="王五")
    assert (await _redeem(token, 502)).outcome is RedeemOutcome.COORDINATOR
    # Someone already in the department.
    await _redeem(await _invite(), 501)
    member = await _redeem(token, 501)
    assert member.outcome is RedeemOutcome.ALREADY_MEMBER
    assert member.tasks  # greeted with the tasks again
    # The token still works for the liaison it was meant for.
    assert (await _redeem(token, 503)).outcome is RedeemOutcome.BOUND


# Coordinators -----------------------------------------------------------------------------------


async def test_grant_and_revoke(plan: None) -> None:
    granted = await onboarding.grant(501, full_name="张三", admin_ids=(ADMIN,))
    assert granted.outcome is GrantOutcome.GRANTED
    assert (await resolve_actor(501, "张三", (ADMIN,))).access is Access.COORDINATOR
    assert (await onboarding.grant(501, admin_ids=(ADMIN,))).outcome is GrantOutcome.ALREADY
    assert (await onboarding.grant(ADMIN, admin_ids=(ADMIN,))).outcome is GrantOutcome.ALREADY
    assert await onboarding.coordinator_ids((ADMIN,)) == {ADMIN, 501}

    revoked = await onboarding.revoke(501, by=ADMIN, admin_ids=(ADMIN,))
    assert revoked.outcome is RevokeOutcome.REVOKED and not revoked.self_revoked
    assert (await resolve_actor(501, "张三", (ADMIN,))).access is Access.GUEST
    again = await onboarding.revoke(501, by=ADMIN, admin_ids=(ADMIN,))
    assert again.outcome is RevokeOutcome.NOT_COORDINATOR
    # ADMIN_IDS come from the configuration: no command can take them back.
    configured = await onboarding.revoke(ADMIN, by=ADMIN, admin_ids=(ADMIN,))
    assert configured.outcome is RevokeOutcome.CONFIGURED
    # Without ADMIN_IDS, the last coordinator cannot leave the bot without one.
    await onboarding.grant(502, full_name="李四")
    assert (await onboarding.revoke(502, by=502, admin_ids=())).outcome is RevokeOutcome.LAST
    await onboarding.grant(503, full_name="王五")
    result = await onboarding.revoke(502, by=502, admin_ids=())
    assert result.outcome is RevokeOutcome.REVOKED and result.self_revoked
    # A lead liaison made a coordinator leaves their department to a deputy.
    await _redeem(await _invite(), 601, "张三")
    await _redeem(await _invite(), 602, "李四")
    result = await onboarding.grant(601, admin_ids=(ADMIN,))
    assert result.left_department.name == "县建设局"
    assert result.promoted.full_name == "李四"
    assert result.person.full_name == "张三"  # the name the bot already knew
    row = await Liaison.get(telegram_user_id=601)
    assert row.department_id is None and not row.is_lead


# Unbinding --------------------------------------------------------------------------------------


async def test_unbind_keeps_reports_and_makes_a_guest(plan: None) -> None:
    await _redeem(await _invite(), 501, "张三")
    await _redeem(await _invite(), 502, "李四")
    assert await onboarding.resolve_user("@U501") == 501  # a username the bot has seen
    assert await onboarding.resolve_user("@nobody_here") is None
    assert await onboarding.resolve_user("@x") is None  # not a valid username
    person = await Liaison.get(telegram_user_id=501)
    task = await Task.get(code="2.1.3")
    await Report.create(
        task=task,
        department_id=person.department_id,
        liaison=person,
        status=ReportStatus.ON_TRACK,
        text="按计划推进",
        chat_id=501,
        message_id=1,
    )
    result = await onboarding.unbind(501, admin_ids=(ADMIN,))
    assert result.outcome is UnbindOutcome.UNBOUND
    assert (result.department.name, result.reports) == ("县建设局", 1)
    assert result.promoted.full_name == "李四"
    assert (await resolve_actor(501, "张三", (ADMIN,))).access is Access.GUEST
    assert await Report.filter(liaison_id=person.id).count() == 1
    again = await onboarding.unbind(501, admin_ids=(ADMIN,))
    assert again.outcome is UnbindOutcome.NOT_LIAISON
    # Coordinators and strangers.
    assert (await onboarding.unbind(ADMIN, admin_ids=(ADMIN,))).outcome is UnbindOutcome.COORDINATOR
    await onboarding.grant(503)
    assert (await onboarding.unbind(503)).outcome is UnbindOutcome.COORDINATOR
    assert (await onboarding.unbind(123456)).outcome is UnbindOutcome.UNKNOWN


# Bot settings: username, coordination group ----------------------------------------------------


async def test_settings_kept_in_the_database(db: str) -> None:
    with pytest.raises(UnknownDepartmentError) as error:
        await onboarding.create_invitation("县建设局")
    assert not error.value.suggestions and not error.value.any_departments
    # The bot username, stored at start-up for the CLI.
    assert await onboarding.known_bot_username() is None
    await onboarding.remember_bot_username("duban_bot")
    await onboarding.remember_bot_username(None)  # ignored
    assert await onboarding.known_bot_username() == "duban_bot"
    await onboarding.remember_bot_username("duban2_bot")
    assert await onboarding.known_bot_username() == "duban2_bot"
    settings = load_settings(database_url=db, coordinator_chat_id="-1001")
    assert await onboarding.coordination_chat_id(settings) == -1001  # the setting by default
    binding = await onboarding.bind_coordination_group(-1002, "专班群", settings)
    assert (binding.already, binding.previous_id) == (False, -1001)
    assert await onboarding.coordination_chat_id(settings) == -1002
    assert (await onboarding.bind_coordination_group(-1002, "专班群", settings)).already
    moved = await onboarding.bind_coordination_group(-1003, "新群", settings)
    assert (moved.previous_id, moved.previous_title) == (-1002, "专班群")
    unset = load_settings(database_url=db, coordinator_chat_id="")
    assert await onboarding.coordination_chat_id(unset) == -1003
    # A group upgraded to a supergroup keeps being the coordination group.
    assert not await onboarding.follow_group_migration(-7, -1007, settings)
    assert await onboarding.follow_group_migration(-1003, -1004, settings)
    assert await onboarding.coordination_chat_id(settings) == -1004
    # Bound by COORDINATOR_CHAT_ID only, and upgraded.
    settings = load_settings(database_url=db, coordinator_chat_id="-5")
    await BotSetting.all().delete()
    assert await onboarding.follow_group_migration(-5, -1005, settings)
    assert await onboarding.coordination_chat_id(settings) == -1005
