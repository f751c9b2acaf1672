"""Progress reports through the real dispatcher with a mocked bot (handlers.reports)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from itertools import count
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiogram.methods import (
    AnswerCallbackQuery,
    EditMessageReplyMarkup,
    EditMessageText,
    SendMessage,
    TelegramMethod,
)
from aiogram.types import (
    Document,
    InlineKeyboardMarkup,
    Message,
    PhotoSize,
    Sticker,
    Update,
    User,
    Voice,
)

from bot.app import build_dispatcher
from bot.i18n import build_i18n
from bot.plan_model import Role
from bot.plan_parser import parse_plan
from bot.schedule import report_cycle_key, rule_for
from bot.settings import load_settings
from bot.workcalendar import WorkCalendar
from handlers.reports import (
    PAGE_SIZE,
    ReportFlow,
    _picker,
    prompt_keyboard,
    prompt_task_id,
    render_prompt,
)
from storage.enums import LiaisonRole, ReportStatus
from storage.models import (
    Assignment,
    Delivery,
    DeliveryKind,
    Department,
    Liaison,
    Report,
    ReportPart,
    Task,
)
from storage.plans import import_plan
from storage.reports import TaskChoice, get_report_task, lead_liaisons, task_reports
from tests.conftest import build_sample_plan
from tests.delivery_support import notifications
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
BUILD = 2001  # 县建设局: leads 2.1.3 (targets 9000 套, 100 台), supports 2.1.1
LAND = 2002  # 县自然资源和规划局: leads 2.1.2, supports 2.1.1 and 2.1.3
CIVIL = 2003  # 县民政局: leads 2.4.3
LAND_EN = 2004  # a second liaison of 县自然资源和规划局 who reads English
WATCHER = 2005  # an observer
GUEST = 2006

_message_ids = count(50_000)
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "changxing-2023-65.txt"


@pytest.fixture
async def plan(db):
    await import_plan(build_sample_plan(), "1" * 64)
    tasks = {task.code: task.id for task in await Task.all()}
    departments = {department.name: department.id for department in await Department.all()}
    people = [
        (BUILD, "王建设", "县建设局", LiaisonRole.LIAISON, None),
        (LAND, "李规划", "县自然资源和规划局", LiaisonRole.LIAISON, None),
        (CIVIL, "赵民政", "县民政局", LiaisonRole.LIAISON, None),
        (LAND_EN, "Lee", "县自然资源和规划局", LiaisonRole.LIAISON, "en"),
        (WATCHER, "钱观察", None, LiaisonRole.OBSERVER, None),
    ]
    for user_id, name, department, role, locale in people:
        await Liaison.create(
            telegram_user_id=user_id,
            full_name=name,
            department_id=departments[department] if department else None,
            role=role,
            locale=locale,
        )
    return SimpleNamespace(tasks=tasks, departments=departments)


@pytest.fixture
def dispatcher(db):
    return build_dispatcher(load_settings(database_url=db, admin_ids=str(ADMIN)))


@pytest.fixture
def bot():
    return MockedBot()


@pytest.fixture
def zh():
    """gettext outside a handler, as the scheduler will call render_prompt: an I18n context."""
    i18n = build_i18n("zh")
    with i18n.context(), i18n.use_locale("zh"):
        yield i18n


class Person:
    """A liaison in a private chat: sends messages, presses the last keyboard's buttons."""

    def __init__(self, dispatcher, bot: MockedBot, user_id: int, language: str = "zh") -> None:
        self.dispatcher = dispatcher
        self.bot = bot
        self.user = user(user_id, first_name=f"u{user_id}", language_code=language)
        self.chat = private_chat(self.user)
        self.markup: InlineKeyboardMarkup | None = None
        self.last_text = ""
        self.confirmed: list[TelegramMethod[Any]] = []  # what the last submit() sent

    async def feed(self, update: Update) -> list[TelegramMethod[Any]]:
        self.bot.session.requests.clear()
        await self.dispatcher.feed_update(self.bot, update)
        requests = list(self.bot.session.requests)
        for request in requests:
            if isinstance(request, SendMessage | EditMessageText):
                self.last_text = request.text
                if request.chat_id in (None, self.chat.id) or isinstance(request, EditMessageText):
                    self.markup = request.reply_markup
            if isinstance(request, EditMessageReplyMarkup):
                self.markup = request.reply_markup
        return requests

    async def send(self, text: str, **fields: Any) -> list[TelegramMethod[Any]]:
        return await self.feed(self.text_update(text, **fields))

    def text_update(self, text: str, **fields: Any) -> Update:
        return message_update(self.user, text, chat=self.chat, **fields)

    def media_update(self, **content: Any) -> Update:
        message = Message(
            message_id=next(_message_ids),
            date=datetime.now(UTC),
            chat=self.chat,
            from_user=self.user,
            **content,
        )
        return Update(update_id=next(_message_ids), message=message)

    def data(self, prefix: str) -> list[str]:
        if self.markup is None:
            return []
        return [
            button.callback_data
            for row in self.markup.inline_keyboard
            for button in row
            if button.callback_data and button.callback_data.startswith(prefix)
        ]

    def button(self, prefix: str, index: int = 0) -> str:
        found = self.data(prefix)
        assert found, f"no {prefix!r} button in {self.markup}"
        return found[index]

    async def press(self, data: str) -> list[TelegramMethod[Any]]:
        message = bot_message(self.chat, self.last_text or "…", reply_markup=self.markup)
        return await self.feed(callback_update(self.user, data, message=message))

    async def state(self) -> str | None:
        context = self.dispatcher.fsm.get_context(self.bot, self.chat.id, self.user.id)
        return await context.get_state()


def sent(requests: list[TelegramMethod[Any]]) -> list[str]:
    return [r.text for r in requests if isinstance(r, SendMessage | EditMessageText)]


def answers(requests: list[TelegramMethod[Any]]) -> list[AnswerCallbackQuery]:
    return [r for r in requests if isinstance(r, AnswerCallbackQuery)]


async def report_until_preview(person: Person, task_id: int, status: str, *texts: str) -> None:
    await person.send("/report")
    await person.press(f"r2:{person.button('r2:').split(':')[1]}:{task_id}")
    await person.press(next(d for d in person.data("r4:") if d.endswith(status)))
    for text in texts:
        await person.send(text)
    await person.send("/done")


def confirm_button(person: Person) -> str:
    return next(d for d in person.data("r5:") if d.endswith(":ok"))


async def submit(person: Person, task_id: int, text: str) -> tuple[Report, Update]:
    """Report on a task by /report; the confirmation's requests go to `person.confirmed`."""
    await person.send("/report")
    flow = person.button("r2:").split(":")[1]
    await person.press(f"r2:{flow}:{task_id}")
    await person.press(f"r4:{flow}:on_track")
    update = person.text_update(text)
    await person.feed(update)
    await person.send("/done")
    person.confirmed = await person.press(confirm_button(person))
    return await Report.get(message_id=update.message.message_id), update


def edited(update: Update, text: str) -> Update:
    stamp = int(datetime.now(UTC).timestamp())
    message = update.message.model_copy(update={"text": text, "edit_date": stamp})
    return Update(update_id=next(_message_ids), edited_message=message)


async def import_example_plan() -> None:
    await import_plan(parse_plan(await asyncio.to_thread(EXAMPLE.read_bytes)), "2" * 64)


# -- who may report ------------------------------------------------------------------------------


async def test_only_liaisons_may_report_and_only_in_private(plan, dispatcher, bot):
    for user_id, expected in ((GUEST, "邀请"), (WATCHER, "联络员"), (ADMIN, "联络员")):
        person = Person(dispatcher, bot, user_id)
        replies = sent(await person.send("/report"))
        assert len(replies) == 1 and expected in replies[0]
        assert await person.state() is None
    requests = await Person(dispatcher, bot, BUILD).feed(
        message_update(user(BUILD), "/report", chat=group_chat())
    )
    assert "私聊" in sent(requests)[0]


# -- the /report conversation ---------------------------------------------------------------------


def test_the_picker_paginates(zh):
    choices = [
        TaskChoice(i, f"1.{i}", f"任务{i}" * 20, Role.SUPPORT, date(2027, 1, 1)) for i in range(20)
    ]
    first = _picker(choices, 123, 0)
    data = [b.callback_data for row in first.inline_keyboard for b in row]
    assert len([d for d in data if d.startswith("r2:")]) == PAGE_SIZE
    assert "r3:123:1" in data and not any(d.startswith("r3:123:-") for d in data)
    last = _picker(choices, 123, 2)
    data = [b.callback_data for row in last.inline_keyboard for b in row]
    assert len([d for d in data if d.startswith("r2:")]) == 4
    assert "r3:123:1" in data and "r3:123:3" not in data
    assert all(len(d.encode()) <= 64 for d in data)
    assert all(len(b.text) <= 40 for row in first.inline_keyboard for b in row)


async def test_a_support_unit_reports_and_the_lead_is_told(plan, dispatcher, bot):
    person = Person(dispatcher, bot, LAND)
    task_id = plan.tasks["2.1.3"]
    replies = sent(await person.send("/report"))
    assert "县自然资源和规划局" in replies[0]
    # The picker: lead tasks first, then document order.
    task_ids = [int(data.split(":")[2]) for data in person.data("r2:")]
    assert task_ids == [plan.tasks["2.1.2"], plan.tasks["2.1.1"], task_id]
    labels = [b.text for row in person.markup.inline_keyboard for b in row]
    assert "（牵头）" in labels[0] and "（配合）" in labels[1]
    assert await person.state() == ReportFlow.choosing_task.state
    flow = person.button("r2:").split(":")[1]
    replies = sent(await person.press(f"r2:{flow}:{task_id}"))
    assert "推动城市有机更新" in replies[0] and "选择状态" in replies[0]
    assert len(person.data("r4:")) == 4
    await person.press(f"r4:{flow}:at_risk")
    assert await person.state() == ReportFlow.collecting.state
    text_update = person.text_update("已筹集6200套 <b>注意</b> & <script>x</script>")
    ack = sent(await person.feed(text_update))
    assert "文字 1 条" in ack[0]
    photo = person.media_update(
        photo=[
            PhotoSize(file_id="small", file_unique_id="s", width=90, height=90),
            PhotoSize(file_id="big", file_unique_id="b", width=1280, height=960),
        ],
        caption="电梯加装完成45台",
    )
    await person.feed(photo)
    preview = sent(await person.press(person.button("r5:")))[0]  # «完成»
    assert "请核对" in preview
    assert "&lt;b&gt;注意&lt;/b&gt; &amp; &lt;script&gt;" in preview and "<script>" not in preview
    assert "累计筹集保障性租赁住房：6200套" in preview and "实施电梯加装：45台" in preview
    assert "照片 1 张" in preview
    assert await person.state() == ReportFlow.confirming.state
    requests = await person.press(confirm_button(person))
    assert "报送成功" in sent(requests)[0]
    assert person.data("r7:")  # 修改 / 撤回 under the receipt
    report = await Report.get(task_id=task_id)
    assert report.status == ReportStatus.AT_RISK
    assert report.department_id == plan.departments["县自然资源和规划局"]
    assert [value["value"] for value in report.values] == ["6200", "45"]
    assert report.attachments == [{"kind": "photo", "file_id": "big"}]
    assert report.chat_id == LAND and report.message_id == text_update.message.message_id
    # The cycle of the task's reporting rule (monthly:20:25 by default), as the scheduler keys it.
    assert report.cycle_key == report_cycle_key(
        rule_for(None, None), report.created_at, calendar=WorkCalendar()
    )
    assert "<script>" in report.text  # stored as written, escaped only when shown
    # The lead department's liaison (县建设局) is told through the ledger (not directly: no
    # request to them here), with the text escaped.
    assert not [r for r in requests if isinstance(r, SendMessage) and r.chat_id == BUILD]
    row = await Delivery.get(kind=DeliveryKind.NOTIFICATION)
    assert row.key == f"notice:lead:report{report.id}:liaison{row.liaison_id}"
    assert row.chat_id == BUILD and row.task_id == task_id
    ((chat, notice),) = await notifications(dispatcher)
    assert chat == BUILD
    assert "县自然资源和规划局" in notice and "存在风险" in notice
    assert "&lt;script&gt;" in notice and "<script>" not in notice
    assert await person.state() is None
    assert [r.id for r in await task_reports(task_id)] == [report.id]
    assert [r.telegram_user_id for r in await lead_liaisons(task_id)] == [BUILD]
    await Liaison.filter(telegram_user_id=BUILD).update(active=False)
    assert await lead_liaisons(task_id) == []


async def test_english(plan, dispatcher, bot):
    person = Person(dispatcher, bot, LAND_EN, language="en")
    await report_until_preview(person, plan.tasks["2.1.3"], "done", "Raised 6,200 套 of 9000 套")
    assert "Please check your report" in person.last_text
    assert "6200套" in person.last_text
    requests = await person.press(confirm_button(person))
    assert "Report submitted" in sent(requests)[0]
    ((chat, notice),) = await notifications(dispatcher)
    assert chat == BUILD and "已完成" in notice  # the lead liaison reads Chinese


async def test_conversation_guards_pages_and_cancel(plan, dispatcher, bot):
    # 县民政局 gets 10 more tasks: the picker pages.
    civil_task = await Task.get(id=plan.tasks["2.4.3"])
    for index in range(10):
        extra = await Task.create(
            plan_id=civil_task.plan_id, code=f"9.9.{index}", position=100 + index,
            section="附加", title=f"附加任务{index}", text="…", deadline=civil_task.deadline,
        )  # fmt: skip
        await Assignment.create(
            task=extra, department_id=plan.departments["县民政局"], role=Role.SUPPORT, position=0
        )
    civil = Person(dispatcher, bot, CIVIL)
    await civil.send("/report")
    assert len(civil.data("r2:")) == PAGE_SIZE and civil.data("r2:")[0].endswith(
        f":{plan.tasks['2.4.3']}"  # the lead task first
    )
    await civil.press(civil.button("r3:"))  # Next ›
    assert len(civil.data("r2:")) == 11 - PAGE_SIZE and len(civil.data("r3:")) == 1
    assert "附加任务9" in sent(await civil.press(civil.data("r2:")[-1]))[0]
    assert await civil.state() == ReportFlow.choosing_status.state

    person = Person(dispatcher, bot, BUILD)
    assert "没有可取消" in sent(await person.send("/cancel"))[0]
    await person.send("/report")
    assert "点击上方按钮" in sent(await person.send("随便说说"))[0]  # text where a button is due
    assert await person.state() == ReportFlow.choosing_task.state
    assert "已取消" in sent(await person.send("/cancel"))[0]
    assert await person.state() is None
    await person.send("/report")
    flow = person.button("r2:").split(":")[1]
    await person.press(f"r2:{flow}:{plan.tasks['2.1.3']}")
    await person.press(f"r4:{flow}:on_track")
    requests = await person.press(f"r5:{flow}:done")  # «完成» before any text
    assert "请先发送进展说明" in answers(requests)[0].text
    assert await person.state() == ReportFlow.collecting.state
    await person.send("进展顺利")
    await person.send("/done")
    requests = await person.press(next(d for d in person.data("r5:") if d.endswith(":no")))
    assert "已取消" in sent(requests)[0]
    assert await person.state() is None
    assert await Report.all().count() == 0


# -- bad input ------------------------------------------------------------------------------------


async def test_forged_and_stale_buttons_are_refused(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    await person.send("/report")
    flow = person.button("r2:").split(":")[1]
    for task_id in (plan.tasks["2.4.3"], 999_999):  # another department's task, no such task
        requests = await person.press(f"r2:{flow}:{task_id}")
        assert "不属于本单位" in answers(requests)[0].text
        assert await person.state() == ReportFlow.choosing_task.state
    for data in (f"r1:{plan.tasks['2.4.3']}:done", "r1:999999:done"):
        requests = await person.press(data)
        assert "不属于本单位" in answers(requests)[0].text
    requests = await person.press("r1:abc:done")  # malformed: the catch-all answers
    assert len(answers(requests)) == 1
    requests = await person.press("r7:999999:wd!")  # no such report
    assert "不是您的报送" in answers(requests)[0].text
    assert await Report.all().count() == 0
    # Buttons of an earlier conversation have expired.
    await person.send("/report")
    requests = await person.press(f"r2:{flow}:{plan.tasks['2.1.3']}")
    assert "已失效" in answers(requests)[0].text
    await person.send("/cancel")
    requests = await person.press(f"r5:{flow}:ok")
    assert "已失效" in answers(requests)[0].text


async def test_stickers_voice_long_text_and_too_many_files_are_refused(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    await person.send("/report")
    flow = person.button("r2:").split(":")[1]
    await person.press(f"r2:{flow}:{plan.tasks['2.1.3']}")
    await person.press(f"r4:{flow}:blocked")
    sticker = Sticker(
        file_id="st",
        file_unique_id="st",
        type="regular",
        width=512,
        height=512,
        is_animated=False,
        is_video=False,
    )
    for update in (
        person.media_update(sticker=sticker),
        person.media_update(voice=Voice(file_id="v", file_unique_id="v", duration=2)),
    ):
        assert "请发送文字、照片或文件" in sent(await person.feed(update))[0]
    assert "内容过长" in sent(await person.send("长" * 4097))[0]
    await person.send("甲" * 2500)
    assert "内容过长" in sent(await person.send("乙" * 2500))[0]
    for index in range(11):
        document = Document(file_id=f"d{index}", file_unique_id=f"d{index}")
        replies = sent(await person.feed(person.media_update(document=document)))
    assert "最多附 10 个" in replies[0]
    await person.send("/done")
    assert "乙" not in person.last_text and "文件 10 个" in person.last_text
    assert await Report.all().count() == 0


async def test_the_same_updates_delivered_twice_store_one_report(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    await person.send("/report")
    flow = person.button("r2:").split(":")[1]
    await person.press(f"r2:{flow}:{plan.tasks['2.1.3']}")
    await person.press(f"r4:{flow}:on_track")
    update = person.text_update("已筹集6200套")
    await person.feed(update)
    assert await person.feed(update) == []  # the duplicate is ignored silently
    await person.send("/done")
    assert person.last_text.count("已筹集6200套") == 1
    confirm = confirm_button(person)
    await person.press(confirm)
    requests = await person.press(confirm)  # pressed again: the conversation is over
    assert len(answers(requests)) == 1
    assert await person.feed(update) == []  # already a stored report: silence
    assert await Report.all().count() == 1


async def test_ambiguous_numbers_are_asked_about_or_left_out(db, dispatcher, bot):
    await import_example_plan()
    department = await Department.get(name="县建设局")
    await Liaison.create(telegram_user_id=BUILD, full_name="王建设", department=department)
    task = await Task.get(code="2.3.2")  # 15 个 未来社区, 6 个 样板区, 67 % 覆盖率
    person = Person(dispatcher, bot, BUILD)
    await report_until_preview(person, task.id, "on_track", "本月完成8个,覆盖率达到45%")
    assert "「8个」应计入哪个指标" in person.last_text
    choices = person.data("r6:")
    assert len(choices) == 3  # 未来社区, 样板区, 不计入
    await person.press(choices[1])
    assert "城乡风貌样板区：8个" in person.last_text
    assert "覆盖率：45%" in person.last_text
    await person.press(confirm_button(person))
    report = await Report.get()
    targets = {t.metric: t.id for t in (await get_report_task(task.id)).targets}
    assert {v["target_id"]: v["value"] for v in report.values} == {
        targets["城乡风貌样板区"]: "8",
        targets["省新时代美丽乡村精品村覆盖率"]: "45",
    }
    # An ambiguous number can be left out.
    await report_until_preview(person, task.id, "on_track", "又完成了3个")
    await person.press(person.data("r6:")[-1])
    assert "未计入" in person.last_text and "3个" in person.last_text
    await person.press(confirm_button(person))
    assert (await Report.filter(id__not=report.id).get()).values == []


# -- prompts --------------------------------------------------------------------------------------


async def test_replying_to_a_prompt_reports_on_its_task(plan, dispatcher, bot, zh):
    person = Person(dispatcher, bot, LAND)
    task_id = plan.tasks["2.1.3"]
    prompt = bot_message(person.chat, "进度提示", reply_markup=prompt_keyboard(task_id))
    reply = person.text_update("已筹集6200套", reply_to_message=prompt)
    replies = sent(await person.feed(reply))
    assert "推动城市有机更新" in replies[0] and "选择状态" in replies[0]
    assert await person.state() == ReportFlow.choosing_status.state
    assert await person.feed(reply) == []  # delivered twice
    preview = sent(await person.press(person.button("r4:")))[0]
    assert "请核对" in preview and "6200套" in preview
    await person.press(confirm_button(person))
    report = await Report.get()
    assert report.task_id == task_id and report.message_id == reply.message.message_id
    assert report.status == ReportStatus.ON_TRACK
    assert await person.feed(reply) == []  # stored already: silence


async def test_a_status_button_on_a_prompt_starts_at_the_text(plan, dispatcher, bot, zh):
    person = Person(dispatcher, bot, LAND)
    task_id = plan.tasks["2.1.3"]
    text = render_prompt(await get_report_task(task_id))
    assert "2.1.3" in text and "累计筹集保障性租赁住房 ≥ 9000套" in text and "回复本消息" in text
    data = [b.callback_data for row in prompt_keyboard(task_id).inline_keyboard for b in row]
    assert data == [f"r1:{task_id}:{status}" for status in ReportStatus]
    assert all(len(item.encode()) <= 64 for item in data)
    person.markup = prompt_keyboard(task_id)
    requests = await person.press(f"r1:{task_id}:blocked")
    assert "受阻" in answers(requests)[0].text
    assert "请发送进展说明" in sent(requests)[0]
    assert await person.state() == ReportFlow.collecting.state
    # A reply to the same prompt now adds to the report under way.
    prompt = bot_message(person.chat, "进度提示", reply_markup=prompt_keyboard(task_id))
    assert "文字 1 条" in sent(await person.send("资金未到位", reply_to_message=prompt))[0]
    await person.send("/done")
    await person.press(confirm_button(person))
    assert (await Report.get()).status == ReportStatus.BLOCKED


async def test_only_replies_to_our_own_prompts_count(plan, dispatcher, bot, zh):
    person = Person(dispatcher, bot, LAND)
    task_id = plan.tasks["2.1.3"]
    impostor = Message(
        message_id=1,
        date=datetime.now(UTC),
        chat=person.chat,
        from_user=User(id=777, is_bot=False, first_name="x"),
        text="fake",
        reply_markup=prompt_keyboard(task_id),
    )
    update = person.text_update("已筹集6200套", reply_to_message=impostor)
    assert prompt_task_id(update.message, bot.id) is None
    plain = bot_message(person.chat, "你好")
    assert prompt_task_id(person.text_update("x", reply_to_message=plain).message, bot.id) is None
    await person.feed(update)
    assert await person.state() is None and await Report.all().count() == 0
    # A prompt about another department's task.
    prompt = bot_message(person.chat, "进度提示", reply_markup=prompt_keyboard(plan.tasks["2.4.3"]))
    replies = sent(await person.send("完成", reply_to_message=prompt))
    assert "不属于本单位" in replies[0]
    assert await person.state() is None


# -- after submission: edit, withdraw, edited messages --------------------------------------------


async def test_editing_the_message_updates_the_report(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    report, update = await submit(person, plan.tasks["2.1.3"], "已筹集6200套")
    replies = sent(await person.feed(edited(update, "已筹集6300套 <i>更正</i>")))
    assert "已根据您编辑后的消息更新" in replies[0] and "&lt;i&gt;" in replies[0]
    await report.refresh_from_db()
    assert report.text == "已筹集6300套 <i>更正</i>"
    assert report.values[0]["value"] == "6300" and report.edited_at is not None
    # Edits of messages that are no report's text are none of our business.
    assert await person.feed(edited(person.text_update("随便"), "随便改改")) == []


async def test_edits_after_24_hours_are_refused(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    report, update = await submit(person, plan.tasks["2.1.3"], "已筹集6200套")
    receipt = person.markup
    await Report.filter(id=report.id).update(created_at=datetime.now(UTC) - timedelta(hours=25))
    replies = sent(await person.feed(edited(update, "已筹集9000套")))
    assert "超过 24 小时" in replies[0]
    person.markup = receipt
    requests = await person.press(person.button("r7:"))
    assert "超过 24 小时" in answers(requests)[0].text
    await report.refresh_from_db()
    assert report.text == "已筹集6200套" and report.edited_at is None


async def test_withdraw_with_confirmation(plan, dispatcher, bot):
    person = Person(dispatcher, bot, LAND)
    task_id = plan.tasks["2.1.3"]
    report, update = await submit(person, task_id, "已筹集6200套")
    withdraw = next(d for d in person.data("r7:") if d.endswith(":wd"))
    await person.press(withdraw)
    assert [d.split(":")[2] for d in person.data("r7:")] == ["wd!", "keep"]
    await person.press(person.button("r7:", 1))  # 保留
    assert [d.split(":")[2] for d in person.data("r7:")] == ["edit", "wd"]
    await person.press(withdraw)
    requests = await person.press(person.button("r7:"))
    assert "报送已撤回" in sent(requests)[0]
    await report.refresh_from_db()
    assert report.withdrawn_at is not None
    assert await task_reports(task_id) == []
    assert len(await task_reports(task_id, include_withdrawn=True)) == 1
    replies = sent(await person.feed(edited(update, "已筹集7000套")))
    assert "已撤回" in replies[0]
    # Someone else cannot withdraw or edit it.
    other = Person(dispatcher, bot, LAND_EN, language="en")
    other.markup = InlineKeyboardMarkup(inline_keyboard=[])
    requests = await other.press(f"r7:{report.id}:edit")
    assert "not your report" in answers(requests)[0].text


async def test_edit_button_reopens_the_report(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    report, _ = await submit(person, plan.tasks["2.1.3"], "已筹集6200套")
    await person.press(next(d for d in person.data("r7:") if d.endswith(":edit")))
    assert "正在修改" in person.last_text and len(person.data("r4:")) == 4
    flow = person.button("r4:").split(":")[1]
    await person.press(f"r4:{flow}:done")
    await person.send("全部完成,已筹集9000套")
    await person.send("/done")
    assert "已完成" in person.last_text and "9000套" in person.last_text
    requests = await person.press(confirm_button(person))
    assert "报送已更新" in sent(requests)[0]
    await report.refresh_from_db()
    assert report.status == ReportStatus.DONE and report.text == "全部完成,已筹集9000套"
    assert report.values[0]["value"] == "9000" and report.edited_at is not None
    assert await Report.all().count() == 1


async def test_edit_without_new_text_keeps_the_old_text(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    report, _ = await submit(person, plan.tasks["2.1.3"], "已筹集6200套")
    # 县建设局 leads 2.1.3: nobody is told about its own report.
    assert [r for r in person.confirmed if isinstance(r, SendMessage)] == []
    await person.press(next(d for d in person.data("r7:") if d.endswith(":edit")))
    flow = person.button("r4:").split(":")[1]
    await person.press(f"r4:{flow}:at_risk")
    await person.press(f"r5:{flow}:done")
    await person.press(confirm_button(person))
    await report.refresh_from_db()
    assert report.status == ReportStatus.AT_RISK and report.text == "已筹集6200套"


# -- numbers at their edges, invisible text (issue 10) ----------------------------------------


async def _collecting(person: Person, task_id: int) -> str:
    """/report on a task up to the collecting step; the conversation's flow number."""
    await person.send("/report")
    flow = person.button("r2:").split(":")[1]
    await person.press(f"r2:{flow}:{task_id}")
    await person.press(f"r4:{flow}:on_track")
    return flow


@pytest.mark.parametrize(
    ("text", "reason"),
    [("已筹集-5套", "「-5套」：指标完成值不能为负数"), ("已筹集1e309套", "不要用科学计数法")],
)
async def test_a_negative_or_scientific_amount_is_refused(plan, dispatcher, bot, text, reason):
    person = Person(dispatcher, bot, BUILD)
    await _collecting(person, plan.tasks["2.1.3"])
    await person.send(text)
    reply = sent(await person.send("/done"))[0]
    assert reason in reply and "尚未保存" in reply
    assert await person.state() == ReportFlow.collecting.state
    assert person.data("r5:")  # «完成» again once the text is corrected
    assert await Report.all().count() == 0


async def test_a_negative_amount_is_refused_in_english(plan, dispatcher, bot):
    person = Person(dispatcher, bot, LAND_EN, language="en")
    await _collecting(person, plan.tasks["2.1.3"])
    await person.send("Raised −5 套")
    reply = sent(await person.press(person.button("r5:")))[0]  # «Done»
    assert "«−5 套»: a value toward a target cannot be negative." in reply
    assert await Report.all().count() == 0


async def test_an_implausible_value_is_confirmed_before_it_is_stored(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    await _collecting(person, plan.tasks["2.1.3"])
    await person.send("已筹集9999999999999999套")
    question = sent(await person.send("/done"))[0]
    assert "超过累计筹集保障性租赁住房目标值（9000套）的 100 倍" in question
    assert await person.state() == ReportFlow.resolving.state
    _record, skip = person.data("r6:")
    await person.press(skip)  # «不计入»: not recorded
    assert "未识别到本任务指标的完成值" in person.last_text and "未计入" in person.last_text
    await person.press(confirm_button(person))
    assert (await Report.get()).values == []
    # Confirmed with its button, it is stored as written.
    await _collecting(person, plan.tasks["2.1.3"])
    await person.send("已筹集90000000套")
    await person.send("/done")
    await person.press(person.data("r6:")[0])
    await person.press(confirm_button(person))
    stored = await Report.filter(values__not=[]).get()
    assert stored.values[0]["value"] == "90000000"


@pytest.mark.parametrize("text", ["\u200b\u200b", "\u200b \u200d\ufeff", "\u3164"])
async def test_text_of_invisible_characters_is_refused(plan, dispatcher, bot, text):
    person = Person(dispatcher, bot, BUILD)
    await _collecting(person, plan.tasks["2.1.3"])
    reply = sent(await person.send(text))[0]
    assert "这条消息没有可见的文字" in reply
    reply = sent(await person.send("/done"))[0]
    assert "请先发送进展" in reply or "文字" in reply
    assert await Report.all().count() == 0


async def test_a_reply_to_a_prompt_with_invisible_text_is_refused(plan, dispatcher, bot, zh):
    person = Person(dispatcher, bot, BUILD)
    task_id = plan.tasks["2.1.3"]
    prompt = bot_message(person.chat, "📋", reply_markup=prompt_keyboard(task_id))
    reply = sent(await person.send("\u200b", reply_to_message=prompt))[0]
    assert "这条消息没有可见的文字" in reply
    assert await person.state() is None


async def test_full_width_digits_are_read(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    await _collecting(person, plan.tasks["2.1.3"])
    await person.send("已筹集６，２００套，电梯加装４５台")
    await person.send("/done")
    await person.press(confirm_button(person))
    assert [v["value"] for v in (await Report.get()).values] == ["6200", "45"]


async def test_the_lead_is_told_in_its_telegram_language(plan, dispatcher, bot):
    lead = Person(dispatcher, bot, BUILD, language="en")
    await lead.send("/whoami")  # the middleware stores "en" (no /lang chosen)
    assert (await Liaison.get(telegram_user_id=BUILD)).language_code == "en"
    person = Person(dispatcher, bot, LAND)
    await report_until_preview(person, plan.tasks["2.1.3"], "at_risk", "已筹集6200套")
    await person.press(confirm_button(person))
    ((chat, notice),) = await notifications(dispatcher)
    assert chat == BUILD and "reported on" in notice and "At risk" in notice
    # With /lang zh chosen, Chinese again.
    await Liaison.filter(telegram_user_id=BUILD).update(locale="zh")
    await report_until_preview(person, plan.tasks["2.1.3"], "at_risk", "已筹集6300套")
    await person.press(confirm_button(person))
    ((chat, notice),) = await notifications(dispatcher)
    assert "存在风险" in notice


# -- edits of a report sent in several messages, and of a draft (issue 10) -------------------


def edited_caption(update: Update, caption: str) -> Update:
    stamp = int(datetime.now(UTC).timestamp())
    message = update.message.model_copy(update={"caption": caption, "edit_date": stamp})
    return Update(update_id=next(_message_ids), edited_message=message)


def photo(person: Person, caption: str, file_id: str, album: str | None = None) -> Update:
    size = PhotoSize(file_id=file_id, file_unique_id=file_id, width=90, height=90)
    return person.media_update(photo=[size], caption=caption, media_group_id=album)


async def submit_parts(person: Person, task_id: int, *updates: Update) -> Report:
    await _collecting(person, task_id)
    for update in updates:
        await person.feed(update)
    await person.send("/done")
    await person.press(confirm_button(person))
    return await Report.get()


def by_target(report: Report, task) -> dict[str, str]:
    metrics = {target.id: target.metric for target in task.targets}
    return {metrics[v["target_id"]]: v["value"] for v in report.values}


async def test_editing_one_part_changes_only_that_part(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    task = await get_report_task(plan.tasks["2.1.3"])
    first = person.text_update("已筹集6200套")
    album = [photo(person, "电梯加装完成45台", "p1", "album"), photo(person, "", "p2", "album")]
    last = person.text_update("其余工作按计划推进")
    report = await submit_parts(person, task.id, first, *album, last)
    assert report.text == "已筹集6200套\n\n电梯加装完成45台\n\n其余工作按计划推进"
    assert await ReportPart.filter(report_id=report.id).count() == 4  # the bare photo too

    replies = sent(await person.feed(edited_caption(album[0], "电梯加装完成50台")))
    assert "已根据您编辑后的消息更新报送" in replies[0]
    await report.refresh_from_db()
    assert report.text == "已筹集6200套\n\n电梯加装完成50台\n\n其余工作按计划推进"
    assert by_target(report, task) == {"累计筹集保障性租赁住房": "6200", "实施电梯加装": "50"}
    assert len(report.attachments) == 2 and report.edited_at is not None

    await person.feed(edited(last, "其余工作已完成"))
    await person.feed(edited(first, "已筹集6300套"))
    await report.refresh_from_db()
    assert report.text == "已筹集6300套\n\n电梯加装完成50台\n\n其余工作已完成"
    assert by_target(report, task) == {"累计筹集保障性租赁住房": "6300", "实施电梯加装": "50"}
    # A caption added to the album's bare photo becomes text in its place; removed, it goes.
    await person.feed(edited_caption(album[1], "加装现场照片"))
    await report.refresh_from_db()
    assert report.text == "已筹集6300套\n\n电梯加装完成50台\n\n加装现场照片\n\n其余工作已完成"
    await person.feed(edited_caption(album[1], ""))
    await report.refresh_from_db()
    assert report.text == "已筹集6300套\n\n电梯加装完成50台\n\n其余工作已完成"
    assert len(report.attachments) == 2
    # Each part is a stored report message: delivered again, it is ignored silently.
    assert await person.feed(last) == [] and await person.feed(album[1]) == []
    assert await Report.all().count() == 1


async def test_values_are_recognised_again_from_the_whole_text(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    task = await get_report_task(plan.tasks["2.1.3"])
    first, second = person.text_update("已筹集6200套"), person.text_update("电梯加装45台")
    report = await submit_parts(person, task.id, first, second)
    # The second part now names no elevators but another 套 number: the elevator value goes,
    # and 6200 vs 100 套 (words alike) would be a question; the value stored before is one of
    # its options and stands.
    reply = sent(await person.feed(edited(second, "又筹集100套")))[0]
    await report.refresh_from_db()
    assert by_target(report, task) == {"累计筹集保障性租赁住房": "6200"}
    assert "未计入" not in reply
    # Edited so that no stored value is an option: not recorded, and named.
    reply = sent(await person.feed(edited(first, "已筹集6400套")))[0]
    await report.refresh_from_db()
    assert report.values == [] and "未计入" in reply and "6400套" in reply


async def test_an_edit_to_a_refused_number_or_to_nothing_changes_nothing(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    first, second = person.text_update("已筹集6200套"), person.text_update("进展顺利")
    report = await submit_parts(person, plan.tasks["2.1.3"], first, second)
    reply = sent(await person.feed(edited(second, "减少-5套")))[0]
    assert "您的修改未保存" in reply and "不能为负数" in reply
    reply = sent(await person.feed(edited(second, "\u200b")))[0]
    assert "没有可见的文字" in reply
    await report.refresh_from_db()
    assert report.text == "已筹集6200套\n\n进展顺利" and report.edited_at is None


async def test_a_report_stored_without_parts_takes_the_edit_as_its_text(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    update = person.text_update("已筹集6200套")
    department = await Department.get(name="县建设局")
    liaison = await Liaison.get(telegram_user_id=BUILD)
    report = await Report.create(
        task_id=plan.tasks["2.1.3"], department=department, liaison=liaison,
        status=ReportStatus.ON_TRACK, text="已筹集6200套\n\n旧版本的第二段", chat_id=BUILD,
        message_id=update.message.message_id,
    )  # fmt: skip
    await person.feed(edited(update, "已筹集6500套"))
    await report.refresh_from_db()
    assert report.text == "已筹集6500套" and report.values[0]["value"] == "6500"


async def test_a_draft_follows_its_edits(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    task = await get_report_task(plan.tasks["2.1.3"])
    await _collecting(person, task.id)
    first, second = person.text_update("已筹集6200套"), person.text_update("电梯加装45台")
    await person.feed(first)
    await person.feed(second)
    reply = sent(await person.feed(edited(first, "已筹集6500套")))[0]
    assert "已根据您编辑后的消息更新草稿" in reply
    assert await person.state() == ReportFlow.collecting.state
    assert "没有可见的文字" in sent(await person.feed(edited(first, "\u200b")))[0]
    bare = photo(person, "", "p9")
    await person.feed(bare)
    await person.feed(edited_caption(bare, "现场照片"))  # a caption added: text in its place
    context = dispatcher.fsm.get_context(bot, person.chat.id, person.user.id)
    assert (await context.get_data())["texts"] == ["已筹集6500套", "电梯加装45台", "现场照片"]
    await person.feed(edited_caption(bare, ""))  # and removed again: the photo stays
    assert (await context.get_data())["texts"] == ["已筹集6500套", "电梯加装45台"]
    await person.send("/done")
    assert "已筹集6500套" in person.last_text and "6200" not in person.last_text
    # Edited while the preview is shown: a new preview with the new text and values.
    replies = sent(await person.feed(edited(second, "电梯加装50台")))
    assert "更新草稿" in replies[0] and "实施电梯加装：50台" in replies[-1]
    assert await person.state() == ReportFlow.confirming.state
    await person.press(confirm_button(person))
    report = await Report.get()
    assert report.text == "已筹集6500套\n\n电梯加装50台"
    assert by_target(report, task) == {"累计筹集保障性租赁住房": "6500", "实施电梯加装": "50"}
    # The stored report knows which message each part came from.
    parts = await ReportPart.filter(report_id=report.id).order_by("position")
    assert [(p.message_id, p.text) for p in parts] == [
        (first.message.message_id, "已筹集6500套"),
        (second.message.message_id, "电梯加装50台"),
        (bare.message.message_id, ""),
    ]


async def test_a_draft_edited_to_a_negative_goes_back_to_collecting(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    await _collecting(person, plan.tasks["2.1.3"])
    update = person.text_update("已筹集6200套")
    await person.feed(update)
    await person.send("/done")
    replies = sent(await person.feed(edited(update, "已筹集-6200套")))
    assert "不能为负数" in replies[-1]
    assert await person.state() == ReportFlow.collecting.state
    await person.feed(edited(update, "已筹集6100套"))
    await person.send("/done")
    await person.press(confirm_button(person))
    assert (await Report.get()).values[0]["value"] == "6100"


async def test_the_edit_button_replaces_the_parts(plan, dispatcher, bot):
    person = Person(dispatcher, bot, BUILD)
    first, second = person.text_update("已筹集6200套"), person.text_update("进展顺利")
    report = await submit_parts(person, plan.tasks["2.1.3"], first, second)
    await person.press(next(d for d in person.data("r7:") if d.endswith(":edit")))
    replacement = person.text_update("已筹集7000套")
    await person.feed(replacement)
    await person.send("/done")
    await person.press(confirm_button(person))
    parts = await ReportPart.filter(report_id=report.id)
    assert [p.message_id for p in parts] == [replacement.message.message_id]
    await person.feed(edited(replacement, "已筹集7100套"))
    await report.refresh_from_db()
    assert report.text == "已筹集7100套" and report.values[0]["value"] == "7100"
    assert await person.feed(edited(second, "旧消息")) == []  # no longer part of the report


async def test_an_albums_photos_arriving_at_once_all_reach_the_draft(db, plan, bot, redis_url):
    """Telegram delivers an album as several updates at once; the dispatcher's events isolation
    handles one person's updates one at a time, so no photo is lost to a concurrent update (the
    draft lives in Redis, where a read-modify-write of it really interleaves)."""
    settings = load_settings(database_url=db, admin_ids=str(ADMIN), redis_url=redis_url)
    dispatcher = build_dispatcher(settings)
    person = Person(dispatcher, bot, BUILD)
    task = await get_report_task(plan.tasks["2.1.3"])
    await _collecting(person, task.id)
    album = [
        photo(person, "电梯加装完成45台" if n == 0 else "", f"p{n}", "album") for n in range(6)
    ]
    await asyncio.gather(*(dispatcher.feed_update(bot, update) for update in album))
    await person.send("/done")
    await person.press(confirm_button(person))
    report = await Report.get()
    await dispatcher.fsm.storage.close()
    assert sorted(item["file_id"] for item in report.attachments) == [f"p{n}" for n in range(6)]
