"""`duban demo` end to end: the simulated month plays and leaves its transcript and chart.

It runs the real bot against the in-process emulator for a simulated month (about 10-20 s), so
it can be skipped locally with DUBAN_SKIP_DEMO=1; CI runs it.
"""

from __future__ import annotations

import os
import re

import pytest

from bot.chart import font_path
from bot.cli import build_parser
from bot.demo import LATE_DEPARTMENT, ROLES, SILENT_DEPARTMENT, run_demo

slow = pytest.mark.skipif(
    os.environ.get("DUBAN_SKIP_DEMO") == "1", reason="DUBAN_SKIP_DEMO=1: the demo plays a month"
)


def bot_lines(transcript: str, to: str, marker: str) -> list[str]:
    return [
        line
        for line in transcript.splitlines()
        if "🤖 →" in line and f"→ {to}" in line and marker in line
    ]


def message_after(transcript: str, marker: str) -> str:
    """A bot message's lines in the transcript: its first line and the indented ones after it."""
    lines = transcript.splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line and "🤖" in line)
    body = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.lstrip().startswith("│"):
            break
        body.append(line)
    return "\n".join(body)


@slow
async def test_the_demo_month_in_chinese(tmp_path) -> None:
    out = await run_demo("zh", tmp_path / "out", echo=False)
    assert out == tmp_path / "out"
    transcript = (out / "transcript.txt").read_text(encoding="utf-8")
    assert (out / "transcript.md").read_text(encoding="utf-8").count("进度提示") >= 5

    # Invitations redeemed through /start TOKEN, the group bound by the coordinator.
    for role in ROLES:
        assert f"您已成为{role.department}的主联络员" in transcript
    assert "本群已设为协调群" in transcript
    # Prompts on the 20th, to every simulated liaison.
    for role in ROLES:
        assert bot_lines(transcript, role.department, "进度提示")[0].startswith("[11-20 09:00]")
    # Reports through the buttons: on track with a number, at risk, blocked, late.
    assert transcript.count("✅ 报送成功") == 4
    for label in ("🟢 按计划推进", "🟡 存在风险", "🔴 受阻"):
        assert f"[按钮\uff1a{label}]" in transcript
    assert "托位数已达5.5个" in transcript
    # Nudges: three for the silent department, and they stop for the late one once it reports.
    assert len(bot_lines(transcript, SILENT_DEPARTMENT, "催报")) == 3
    late = bot_lines(transcript, LATE_DEPARTMENT, "催报")
    assert [line[:13] for line in late] == ["[11-25 09:00]", "[11-26 09:00]"]
    # The escalation names the silent department, and only it.
    escalation = message_after(transcript, "📣")
    assert escalation.startswith("[11-30 09:00]") and SILENT_DEPARTMENT in escalation
    assert all(role.department not in escalation for role in ROLES if role.status is not None)
    # A deadline reminder inside the month, and the weekly summaries with their charts.
    assert "临期提醒" in transcript and "2026-12-31" in message_after(transcript, "临期提醒")
    summaries = re.findall(r"^\[(\d\d-\d\d) 09:00\] 🤖 → 工作专班群: 📋 督办周报", transcript, re.M)
    assert summaries == ["11-23", "11-30", "12-07", "12-14"]
    assert "本周报送：3/34 个单位" in message_after(transcript, "2026年11月30日")
    if font_path() is not None:
        assert transcript.count("周报图表") >= 4
        assert (out / "summary-chart.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert re.search(r"演示结束\uff0c用时 \d+\.\d 秒\uff1b文件在 ", transcript.splitlines()[-1])


@slow
async def test_the_demo_month_in_english(tmp_path) -> None:
    out = await run_demo("en", tmp_path, echo=False)
    transcript = (out / "transcript.txt").read_text(encoding="utf-8")
    assert "Progress prompt" in transcript and "[button: 🟢 On track]" in transcript
    assert transcript.count("Report submitted") == 4
    assert len(bot_lines(transcript, SILENT_DEPARTMENT, "Reminder to report")) == 3
    assert len(bot_lines(transcript, LATE_DEPARTMENT, "Reminder to report")) == 2
    assert SILENT_DEPARTMENT in message_after(transcript, "No progress report")
    assert "Deadline reminder" in transcript and "Weekly summary" in transcript
    assert "进度提示" not in transcript
    assert transcript.splitlines()[-1].startswith("Demo finished in ")


def test_the_cli_has_the_demo_command() -> None:
    args = build_parser().parse_args(["demo", "--lang", "en", "--out", "somewhere"])
    assert (args.lang, args.out, args.handler.__name__) == ("en", "somewhere", "cmd_demo")
    assert build_parser().parse_args(["demo"]).lang == "zh"
