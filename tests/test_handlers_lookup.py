"""/tasks, /task, /dept, /overdue and their buttons, through the real dispatcher (MockedBot)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from aiogram.methods import AnswerCallbackQuery, EditMessageText, SendMessage
from aiogram.types import CallbackQuery, InaccessibleMessage, Update

from bot import onboarding
from bot.app import build_dispatcher
from bot.plan_model import Role
from bot.plan_parser import parse_plan
from bot.settings import load_settings
from handlers.render import MESSAGE_LIMIT
from storage.enums import LiaisonRole, ReportStatus
from storage.models import Assignment, Department, Liaison, Report, Target, Task
from storage.plans import import_plan
from tests.handler_support import (
    bot_message,
    callback_update,
    group_chat,
    message_update,
    private_chat,
    user,
)
from tests.mocked_bot import MockedBot

ADMIN = 9001
LIAISON = 7001  # 县建设局
SUPPORT_LIAISON = 7002  # 县自然资源和规划局
GUEST = 5001
PLAN = Path(__file__).resolve().parent.parent / "examples" / "changxing-2023-65.txt"


@pytest.fixture
async def plan(db: str) -> None:
    """The real plan (18 tasks, 34 departments), two liaisons and a few reports."""
    await import_plan(parse_plan(PLAN.read_bytes()), "1" * 64)
    construction = await Department.get(name="县建设局")
    planning = await Department.get(name="县自然资源和规划局")
    lee = await Liaison.create(
        telegram_user_id=LIAISON,
        full_name="李四",
        department=construction,
        role=LiaisonRole.LIAISON,
    )
    wang = await Liaison.create(
        telegram_user_id=SUPPORT_LIAISON,
        full_name="王<五>",
        department=planning,
        role=LiaisonRole.LIAISON,
    )
    renewal = await Task.get(code="2.1.3")
    housing = await Target.filter(task_id=renewal.id).order_by("position").first()
    await Report.create(
        task=renewal,
        department=construction,
        liaison=lee,
        status=ReportStatus.AT_RISK,
        text="已筹集6200套 <b>加粗</b> & <script>",
        chat_id=LIAISON,
        message_id=1,
        values=[{"target_id": housing.id, "value": "6200"}],
    )
    await Report.create(
        task=renewal,
        department=planning,
        liaison=wang,
        status=ReportStatus.ON_TRACK,
        text="配合推进中",
        chat_id=SUPPORT_LIAISON,
        message_id=1,
    )
    # 2.5.2 (lead 县建设局) is overdue.
    await Task.filter(code="2.5.2").update(deadline=date(2025, 6, 30))


@pytest.fixture
def dispatcher(db: str):
    return build_dispatcher(load_settings(database_url=db, admin_ids=str(ADMIN)))


@pytest.fixture
def bot() -> MockedBot:
    return MockedBot()


async def sent(dispatcher, bot: MockedBot, update) -> list:
    bot.session.requests.clear()
    await dispatcher.feed_update(bot, update)
    return list(bot.session.requests)


async def say(dispatcher, bot, sender_id: int, text: str, *, lang: str = "zh", chat=None) -> list:
    """Every message the bot sends in reply to `text` from `sender_id`."""
    requests = await sent(
        dispatcher, bot, message_update(user(sender_id, language_code=lang), text, chat=chat)
    )
    assert requests and all(isinstance(r, SendMessage) for r in requests), requests
    assert all(len(r.text) <= MESSAGE_LIMIT for r in requests)
    return requests


async def reply(dispatcher, bot, sender_id: int, text: str, **kwargs) -> SendMessage:
    [request] = await say(dispatcher, bot, sender_id, text, **kwargs)
    return request


def buttons(request) -> list[tuple[str, str]]:
    markup = request.reply_markup
    if markup is None:
        return []
    return [(b.text, b.callback_data) for row in markup.inline_keyboard for b in row]


async def press(dispatcher, bot, sender_id: int, data: str, *, text: str = "…", lang: str = "zh"):
    """Press a button with `data` under a bot message; returns (edit or None, callback answer)."""
    sender = user(sender_id, language_code=lang)
    message = bot_message(private_chat(sender), text)
    requests = await sent(dispatcher, bot, callback_update(sender, data, message))
    edits = [r for r in requests if isinstance(r, EditMessageText)]
    answers = [r for r in requests if isinstance(r, AnswerCallbackQuery)]
    assert len(answers) == 1, requests
    assert len(edits) <= 1
    return (edits[0] if edits else None), answers[0]


# Guests ---------------------------------------------------------------------------------------


async def test_guests_are_refused(dispatcher, bot, plan):
    for command in ["/tasks", "/task 2.1.3", "/dept 建设局", "/overdue"]:
        assert "邀请" in (await reply(dispatcher, bot, GUEST, command)).text
        assert "invitation" in (await reply(dispatcher, bot, GUEST, command, lang="en")).text
    edit, answer = await press(dispatcher, bot, GUEST, "p1:a:1")
    assert edit is None and "邀请" in answer.text and answer.show_alert


# /tasks ---------------------------------------------------------------------------------------


async def test_a_liaison_sees_the_tasks_of_their_department_zh_en(dispatcher, bot, plan):
    text = (await reply(dispatcher, bot, LIAISON, "/tasks")).text
    lines = text.splitlines()
    assert lines[0] == "📋 <b>县建设局</b> · 牵头 4 项 · 配合 1 项"
    assert "🔴 1" in lines[1] and "🟡 1" in lines[1]
    # The most urgent first: the overdue task, then the one at risk, then the silent ones.
    assert lines[3] == "🔴 <code>2.5.2</code> 完善市政基础设施"
    assert "牵头 · 截止 2025-06-30 · ⏰ 逾期" in lines[4] and lines[4].endswith("未报送")
    assert lines[5] == "🟡 <code>2.1.3</code> 推动城市有机更新"
    assert "牵头 · 截止 2027-12-31 · 存在风险（" in lines[6]
    assert "⚪ <code>2.1.1</code> 优化全域发展布局" in text
    assert "配合 · 截止 2027-12-31 · 未报送" in text
    assert "/task" in lines[-1]

    # In English.
    text = (await reply(dispatcher, bot, LIAISON, "/tasks", lang="en")).text
    assert text.startswith("📋 <b>县建设局</b>: lead 4 · support 1")
    assert "lead · due 2027-12-31 · at risk (" in text
    assert "support · due 2027-12-31 · no report yet" in text
    assert "d overdue" in text


async def test_a_coordinator_gets_one_line_per_department_in_pages_zh_en(dispatcher, bot, plan):
    first = await reply(dispatcher, bot, ADMIN, "/tasks")
    lines = first.text.splitlines()
    assert lines[0] == "📊 <b>各单位任务概况</b> · 任务 18 项 · 单位 34 个"
    assert lines[1].startswith("已报送 2/58") and "⏰ 逾期 1" in lines[1]
    # The department with an overdue task comes first; support units are not blamed for it.
    assert lines[3] == "🔴 <b>县建设局</b>"
    assert lines[4].strip() == "牵头 4 · 配合 1 · 已报 1/5 · ⏰1 · 🟡1"
    assert "第 1/4 页" in first.text
    assert buttons(first) == [("下一页 ▶", "p1:a:1")]

    edit, answer = await press(dispatcher, bot, ADMIN, "p1:a:3", text=first.text)
    assert answer.text is None  # a plain acknowledgement
    assert "第 4/4 页" in edit.text
    assert buttons(edit) == [("◀ 上一页", "p1:a:2")]
    seen = [
        line
        for line in (first.text + edit.text).splitlines()
        if line.startswith(("🔴", "🟡", "⚪", "🟢"))
    ]
    assert len(seen) == 10 + 4  # pages of ten departments

    # In English, asked for explicitly with "all".
    first = await reply(dispatcher, bot, ADMIN, "/tasks all", lang="en")
    assert first.text.startswith("📊 <b>All departments</b> · tasks: 18 · departments: 34")
    assert "lead 4 · support 1 · reported 1/5" in first.text
    assert buttons(first) == [("Next ▶", "p1:a:1")]
    edit, _ = await press(dispatcher, bot, ADMIN, "p1:a:1", lang="en")
    assert "Page 2 of 4" in edit.text
    assert [text for text, _ in buttons(edit)] == ["◀ Previous", "Next ▶"]


async def test_tasks_of_a_named_department_one_several_or_none(dispatcher, bot, plan):
    for query in ("县建设局", "建设局", "建设"):
        text = (await reply(dispatcher, bot, SUPPORT_LIAISON, f"/tasks {query}")).text
        assert text.startswith("📋 <b>县建设局</b>"), query

    # Several matches: buttons to choose.
    choice = await reply(dispatcher, bot, ADMIN, "/tasks 县委")
    assert "请选择" in choice.text
    ids = {d.name: d.id for d in await Department.filter(name__startswith="县委")}
    assert ("县委宣传部", f"p1:d{ids['县委宣传部']}:0") in buttons(choice)
    edit, _ = await press(dispatcher, bot, ADMIN, f"p1:d{ids['县委宣传部']}:0")
    assert edit.text.startswith("📋 <b>县委宣传部</b>")

    # No match: the closest names.
    request = await reply(dispatcher, bot, ADMIN, "/tasks 住建局")
    assert "没有找到“住建局”" in request.text
    assert buttons(request)[0][0] == "县建设局"
    nothing = await reply(dispatcher, bot, ADMIN, "/tasks qqq", lang="en")
    assert nothing.text == "No department «qqq». Send /tasks all to see every department."
    assert nothing.reply_markup is None


async def test_lookups_are_refused_in_a_group_that_is_not_the_coordination_group(
    dispatcher, bot, plan
):
    """Report texts and liaison names stay out of groups of guests: a short line points to a
    private chat, for members and coordinators alike; their buttons are refused too."""
    other = group_chat(-100999, "县城建交流群")
    for sender in (LIAISON, ADMIN):
        for command in [
            "/tasks",
            "/tasks all",
            "/task@duban_bot 2.1.3",
            "/dept 建设局",
            "/overdue",
        ]:
            request = await reply(dispatcher, bot, sender, command, chat=other)
            assert request.text == "请在与我的私聊或协调群中使用此命令。", command
    english = await reply(dispatcher, bot, ADMIN, "/task 2.1.3", lang="en", chat=other)
    assert (
        english.text == "Use this command in a private chat with me or in the coordination group."
    )
    # A guest there hears the members-only line, as anywhere.
    assert "邀请" in (await reply(dispatcher, bot, GUEST, "/tasks", chat=other)).text
    # Buttons under a list left in that group (posted while it was the coordination group).
    construction = await Department.get(name="县建设局")
    for data in ("p1:a:0", f"p1:d{construction.id}:0", f"d1:{construction.id}"):
        sender = user(ADMIN, language_code="zh")
        requests = await sent(
            dispatcher, bot, callback_update(sender, data, bot_message(other, "…"))
        )
        assert not [r for r in requests if isinstance(r, EditMessageText)], data
        [answer] = [r for r in requests if isinstance(r, AnswerCallbackQuery)]
        assert answer.text == "请在与我的私聊或协调群中使用此命令。" and answer.show_alert


async def test_lookups_in_the_coordination_group(dispatcher, bot, plan):
    await onboarding.bind_coordination_group(group_chat().id, "协调群", load_settings())
    request = await reply(dispatcher, bot, LIAISON, "/tasks@duban_bot", chat=group_chat())
    assert request.chat_id == group_chat().id
    assert request.text.startswith("📋 <b>县建设局</b>")
    card = await reply(dispatcher, bot, LIAISON, "/task@duban_bot 2.1.3", chat=group_chat())
    assert card.text.startswith("📌") and "/report" not in card.text  # /report is private


# Forged and stale buttons ---------------------------------------------------------------------


async def test_forged_buttons_are_refused(dispatcher, bot, plan):
    forged = ["p1:a:4", "p1:a:-1", "p1:d999999:0", "p1:zz:0", "p1:o77:0", "p1:a5:0"]
    forged += ["p1:d9999999999:0", "p1:o0:0", "p1:a:99999999999999999999"]
    for data in forged:
        edit, answer = await press(dispatcher, bot, ADMIN, data)
        assert edit is None, data
        assert "失效" in answer.text and answer.show_alert

    # Malformed data does not reach the lookup router: the fallback answers it.
    edit, answer = await press(dispatcher, bot, ADMIN, "p1:a:notanumber")
    assert edit is None and answer.text

    # Forged department buttons.
    for data in ["d1:999999", "d1:0", "d1:99999999999999999999"]:  # the last: beyond 32 bits
        edit, answer = await press(dispatcher, bot, ADMIN, data, lang="en")
        assert edit is None
        assert answer.text == "No such department any more." and answer.show_alert


async def test_unchanged_or_inaccessible_messages_are_answered(dispatcher, bot, plan):
    bot.add_result_for(
        EditMessageText,
        ok=False,
        error_code=400,
        description="Bad Request: message is not modified: specified new message content and "
        "reply markup are exactly the same as a current content and reply markup of the message",
    )
    edit, answer = await press(dispatcher, bot, ADMIN, "p1:a:0")
    assert edit is not None and answer.text is None

    # A button under a message too old for the bot to edit.
    sender = user(ADMIN)
    query = CallbackQuery(
        id="q1",
        from_user=sender,
        chat_instance="ci",
        data="p1:a:1",
        message=InaccessibleMessage(chat=private_chat(sender), message_id=5, date=0),
    )
    requests = await sent(dispatcher, bot, Update(update_id=999_001, callback_query=query))
    [answer] = requests
    assert isinstance(answer, AnswerCallbackQuery) and "过期" in answer.text


# /task ----------------------------------------------------------------------------------------


async def test_the_task_card_zh_en_and_who_reads_what(dispatcher, bot, plan):
    text = (await reply(dispatcher, bot, ADMIN, "/task 2.1.3")).text
    lines = text.splitlines()
    assert lines[0] == "📌 <code>2.1.3</code> <b>推动城市有机更新</b>"
    assert lines[1] == "<i>实施优化空间规划布局行动</i>"
    assert lines[2] == "截止 2027-12-31"
    assert "🟡 县建设局 · 牵头 · 存在风险（" in text
    # Report text is escaped, with its author and local time.
    assert "李四，" in text
    assert "已筹集6200套 &lt;b&gt;加粗&lt;/b&gt; &amp; &lt;script&gt;" in text
    assert "<script>" not in text
    assert "王&lt;五&gt;，" in text
    assert "• 累计筹集保障性租赁住房 ≥9000套" in text
    assert "最新 6200套（68%）" in text
    assert "尚未报送数值" in text
    assert "到2027年,累计筹集保障性租赁住房9000套以上" in text  # the full text
    assert "/report" not in text  # a coordinator does not report

    # The short code, in English, asked by a liaison of the lead unit.
    text = (await reply(dispatcher, bot, LIAISON, "/task 1.3", lang="en")).text
    assert text.startswith("📌 <code>2.1.3</code>")
    assert "🟡 县建设局 · lead · at risk (" in text
    assert "latest 6200套 (68%)" in text
    assert text.endswith("Report progress: /report")  # a liaison of a unit on the task

    # A support unit's liaison sees the lead's status, not its report.
    text = (await reply(dispatcher, bot, SUPPORT_LIAISON, "/task 2.1.3")).text
    assert "存在风险" in text and "李四" not in text and "6200套 &lt;b&gt;" not in text
    assert "配合推进中" in text  # their own

    # An overdue task.
    text = (await reply(dispatcher, bot, ADMIN, "/task 5.2")).text
    assert text.splitlines()[2].startswith("截止 2025-06-30 · ⏰ 逾期")
    assert "🔴 县建设局 · 牵头 · 未报送" in text
    # Its support units are overdue too, as in /tasks and the weekly summary (bot.lights).
    assert "🔴 县市场监管局 · 配合 · 未报送" in text


async def test_bad_ambiguous_and_huge_task_codes(dispatcher, bot, plan):
    for command, zh, en in [
        ("/task 9.9", "没有找到任务“9.9”", "No task «9.9». Send /tasks to see the codes."),
        ("/task", "用法", "Usage: /task CODE"),
        ("/task <b>x</b>", "没有找到任务“&lt;b&gt;x&lt;/b&gt;”", "«&lt;b&gt;x&lt;/b&gt;»"),
    ]:
        assert zh in (await reply(dispatcher, bot, ADMIN, command)).text
        assert en in (await reply(dispatcher, bot, ADMIN, command, lang="en")).text

    # An ambiguous short code lists the candidates.
    renewal = await Task.get(code="2.1.3")
    await Task.create(
        plan_id=renewal.plan_id,
        code="3.1.3",
        position=99,
        section="保障措施",
        title="另一项",
        text="x",
        deadline=date(2027, 12, 31),
    )
    text = (await reply(dispatcher, bot, ADMIN, "/task 1.3")).text
    assert "2.1.3, 3.1.3" in text and "完整编号" in text
    assert (await reply(dispatcher, bot, ADMIN, "/task 2.1.3")).text.startswith("📌")

    # A huge argument is answered briefly.
    text = (await reply(dispatcher, bot, ADMIN, "/task " + "<&>" * 2000)).text
    assert len(text) < 400 and "&lt;&amp;&gt;" in text


async def test_long_task_cards_are_shortened_and_split(dispatcher, bot, plan):
    await Task.filter(code="2.1.3").update(text="很长的任务内容&。" * 1500)
    requests = await say(dispatcher, bot, ADMIN, "/task 2.1.3")  # each within 4096
    assert requests[0].text.startswith("📌 <code>2.1.3</code>")
    assert "最新 6200套" in requests[0].text  # the status comes before the long text
    assert requests[-1].text.endswith("很长的任务内容&amp;。\n……（内容过长，已截断）")

    # Many units, each with a long report, plus a long text: several messages, split on lines.
    renewal = await Task.get(code="2.1.3")
    await Task.filter(id=renewal.id).update(text="任务内容&。" * 500)
    for number in range(30):
        township = await Department.create(name=f"第{number}号乡镇<街道>")
        await Assignment.create(
            task=renewal, department=township, role=Role.SUPPORT, position=10 + number
        )
        someone = await Liaison.create(
            telegram_user_id=80_000 + number, full_name="联络员", department=township
        )
        await Report.create(
            task=renewal,
            department=township,
            liaison=someone,
            status=ReportStatus.ON_TRACK,
            text="进展&<顺利>" * 30,
            chat_id=someone.telegram_user_id,
            message_id=1,
        )
    requests = await say(dispatcher, bot, ADMIN, "/task 2.1.3")
    assert len(requests) >= 2
    assert requests[-1].text.endswith("……（内容过长，已截断）")
    for request in requests:  # every line whole: tags closed, entities intact
        assert request.text.count("<b>") == request.text.count("</b>")
        assert "&amp" not in request.text.replace("&amp;", "")


# /dept ----------------------------------------------------------------------------------------


async def test_dept_one_several_none_and_no_name(dispatcher, bot, plan):
    construction = await Department.get(name="县建设局")
    for query in ["县建设局", "建设局", "建设"]:
        request = await reply(dispatcher, bot, ADMIN, f"/dept {query}")
        lines = request.text.splitlines()
        assert lines[0] == "🏢 <b>县建设局</b>"
        assert lines[1] == "政府部门 · 联络员 1 人"
        assert lines[2] == "任务：牵头 4 项 · 配合 1 项"
        assert buttons(request) == [("📋 任务清单", f"p1:d{construction.id}:0")]
    edit, _ = await press(dispatcher, bot, ADMIN, f"p1:d{construction.id}:0")
    assert edit.text.startswith("📋 <b>县建设局</b>")

    # Several matches, then a choice.
    choice = await reply(dispatcher, bot, ADMIN, "/dept 街道", lang="en")
    assert choice.text == "Several departments match «街道». Choose one:"
    labels = dict(buttons(choice))
    assert set(labels) == {"各乡镇(街道、园区)", "雉城街道", "龙山街道", "画溪街道"}
    edit, answer = await press(dispatcher, bot, ADMIN, labels["雉城街道"], lang="en")
    assert edit.text.splitlines()[:2] == [
        "🏢 <b>雉城街道</b>",
        "township or street · no liaison yet",
    ]
    assert answer.text is None

    # No match: the closest names as buttons.
    request = await reply(dispatcher, bot, ADMIN, "/dept 住建局")
    assert request.text == "没有找到“住建局”。您要找的是不是："
    assert buttons(request)[0] == ("县建设局", f"d1:{(await Department.get(name='县建设局')).id}")

    # No name; too many matches.
    assert "/dept" in (await reply(dispatcher, bot, ADMIN, "/dept")).text
    request = await reply(dispatcher, bot, ADMIN, "/dept 局")
    assert len(buttons(request)) == 10
    assert "仅显示前 10 个" in request.text


# /overdue -------------------------------------------------------------------------------------


async def test_overdue_for_a_coordinator_and_a_liaison(dispatcher, bot, plan):
    everyone = (await reply(dispatcher, bot, ADMIN, "/overdue")).text.splitlines()
    assert everyone[0] == "⏰ <b>逾期任务</b>：1 项"
    assert everyone[2] == "<b>县建设局</b>"
    assert everyone[3] == "🔴 <code>2.5.2</code> 完善市政基础设施"
    mine = (await reply(dispatcher, bot, LIAISON, "/overdue", lang="en")).text
    assert mine.startswith("⏰ <b>Overdue tasks of 县建设局</b>: 1")
    assert "lead · due 2025-06-30 · ⏰" in mine
    nothing = (await reply(dispatcher, bot, SUPPORT_LIAISON, "/overdue")).text
    assert nothing == "✅ 县自然资源和规划局没有逾期任务。"

    # Every task overdue: more than one page.
    await Task.all().update(deadline=date(2025, 1, 1))  # every task overdue: 18 > one page
    first = await reply(dispatcher, bot, ADMIN, "/overdue")
    assert first.text.startswith("⏰ <b>逾期任务</b>：18 项")
    assert buttons(first) == [("下一页 ▶", "p1:o:1")]
    edit, _ = await press(dispatcher, bot, ADMIN, "p1:o:2")
    assert "第 3/3 页" in edit.text
    # A group header opens every page, so a page never starts with an orphan task.
    assert edit.text.splitlines()[2].startswith("<b>")


async def test_a_task_withdrawn_by_a_revision_still_shows_its_reports(dispatcher, bot, plan):
    text = PLAN.read_text(encoding="utf-8")
    revised = "\n".join(line for line in text.splitlines() if not line.startswith("3.推动城市"))
    await import_plan(parse_plan(revised.encode()), "2" * 64)

    text = (await reply(dispatcher, bot, ADMIN, "/task 2.1.3")).text
    lines = text.splitlines()
    assert lines[0] == "📌 <code>2.1.3</code> <b>推动城市有机更新</b>"
    assert lines[2].startswith("⚠️ 该任务已于 20") and "因方案修订撤销" in lines[2]
    assert "已筹集6200套 &lt;b&gt;加粗&lt;/b&gt;" in text and "配合推进中" in text
    assert "逾期" not in text

    text = (await reply(dispatcher, bot, LIAISON, "/task 2.1.3", lang="en")).text
    assert "Withdrawn by a plan revision on " in text
    assert "/report" not in text  # nobody reports on withdrawn work
