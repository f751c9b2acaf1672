"""The weekly summary's chart: a PNG of task status by department and target progress.

matplotlib (Agg, no pyplot: figures are plain objects, safe to draw in a worker thread — call
`await asyncio.to_thread(render_chart, summary, locale)`). Chinese labels need a CJK font:
Noto Sans CJK from the `manimgx-fonts-cjk` package (SIL Open Font License), registered with
matplotlib's font manager and put first in `font.sans-serif`. Without it (or without matplotlib)
`render_chart` logs a warning and returns None: the summary then goes out as text alone.

The package ships the variable font, whose default instance — the only one matplotlib can reach —
is the Thin weight; a thin stroke in the text's own colour brings labels to a regular weight.
Emoji are never drawn (no font here has them): the colours speak for the lights.

matplotlib is imported on the first chart, not with this module: it costs about a second and
30 MB, which `duban run` would otherwise pay at every start for a chart drawn once a week.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import threading
from collections.abc import Sequence
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from aiogram.utils.i18n import gettext as _

from bot.lights import Light
from bot.summary import TargetProgress, WeeklySummary
from bot.summary_render import i18n_locale

if TYPE_CHECKING:
    from matplotlib.axes import Axes

log = logging.getLogger(__name__)

FONT_PACKAGE = "manimgx_fonts_cjk"
FONT_FILE = "NotoSansCJK-VF.otf.ttc"
FONT_FAMILY = "Noto Sans CJK SC"
MAX_DEPARTMENTS = 40  # bars in the status panel; the rest are counted in its title
MAX_TARGETS = 40
LABEL_LIMIT = 16  # characters of a label
COLOURS = {
    Light.RED: "#d93025",
    Light.YELLOW: "#f2b90c",
    Light.GREEN: "#2e9d4d",
    Light.PENDING: "#c4c7cc",
}
_lock = threading.Lock()
_font_ready: bool | None = None


def font_path() -> Path | None:
    """The bundled Noto Sans CJK collection, or None when the package is not installed."""
    try:
        path = resources.files(FONT_PACKAGE) / FONT_FILE
    except ModuleNotFoundError:
        return None
    return Path(str(path)) if path.is_file() else None


def ensure_cjk_font() -> bool:
    """Register the CJK font with matplotlib once; False (and a warning) when it is missing."""
    global _font_ready  # noqa: PLW0603 - matplotlib's font manager is process-wide state too
    with _lock:
        if _font_ready is not None:
            return _font_ready
        path = font_path()
        if path is None:
            log.warning(
                "Chart skipped: the CJK font package %s is not installed; "
                "the summary goes out as text alone",
                FONT_PACKAGE,
            )
            _font_ready = False
            return False
        import matplotlib  # noqa: PLC0415 - on the first chart, not at start-up (module docstring)
        from matplotlib import font_manager  # noqa: PLC0415

        matplotlib.use("Agg")  # no display, no GUI toolkit: only ever render to bytes
        manager = font_manager.fontManager
        manager.addfont(str(path))
        # The collection's faces report weight 100 (the variable font's default instance);
        # registered as regular, matplotlib finds them for normal text without a warning.
        manager.ttflist = [
            dataclasses.replace(entry, weight=400) if entry.fname == str(path) else entry
            for entry in manager.ttflist
        ]
        families = [name for name in matplotlib.rcParams["font.sans-serif"] if name != FONT_FAMILY]
        matplotlib.rcParams["font.sans-serif"] = [FONT_FAMILY, *families]
        matplotlib.rcParams["font.family"] = "sans-serif"
        matplotlib.rcParams["axes.unicode_minus"] = False
        _font_ready = True
        return True


def render_chart(summary: WeeklySummary, locale: str = "zh") -> bytes | None:
    """The chart as PNG bytes, or None when no CJK font is available. Blocking: run it in a
    thread (`asyncio.to_thread`)."""
    if not ensure_cjk_font():
        return None
    with i18n_locale(locale):
        labels = _labels()
        return _draw(summary, labels)


def _labels() -> dict[str, str]:
    return {
        "status": _("Tasks by department"),
        "more_departments": _("the {shown} departments with the most red items of {total}"),
        "count": _("tasks"),
        Light.RED: _("red: overdue, blocked or silent"),
        Light.YELLOW: _("yellow: at risk or behind pace"),
        Light.GREEN: _("green: on track or done"),
        Light.PENDING: _("awaiting a first report"),
        "targets": _("Targets: % of the goal"),
        "more_targets": _("the first {shown} targets of {total}"),
        "pace": _("pace (where the target should be today)"),
        "goal": _("Plan goal"),
        "no_value": _("no value reported"),
        "empty": _("nothing to show yet"),
    }


def _draw(summary: WeeklySummary, labels: dict[str, str]) -> bytes:
    # Imported by ensure_cjk_font already; named here, not at the top (module docstring).
    from matplotlib import patheffects  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415
    from matplotlib.text import Text  # noqa: PLC0415

    departments = summary.departments[:MAX_DEPARTMENTS]
    targets = summary.targets[:MAX_TARGETS]
    rows_top = max(len(departments), 1)
    rows_bottom = max(len(targets), 1)
    height = 1.6 + 0.3 * rows_top + 1.4 + 0.3 * rows_bottom
    figure = Figure(figsize=(8, height), dpi=150, layout="constrained")
    top, bottom = figure.subplots(
        2, 1, gridspec_kw={"height_ratios": [rows_top + 3, rows_bottom + 3]}
    )

    title = labels["status"]
    if len(summary.departments) > len(departments):
        title += "\n" + labels["more_departments"].format(
            shown=len(departments), total=len(summary.departments)
        )
    top.set_title(title, loc="left", fontsize=12)
    if departments:
        names = [_clip(block.name) for block in departments][::-1]
        left = [0] * len(names)
        for light in (Light.RED, Light.YELLOW, Light.GREEN, Light.PENDING):
            counts = [block.counts.get(light, 0) for block in departments][::-1]
            top.barh(names, counts, left=left, color=COLOURS[light], label=labels[light])
            left = [a + b for a, b in zip(left, counts, strict=True)]
        top.set_xlabel(labels["count"])
        top.xaxis.get_major_locator().set_params(integer=True)
        top.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, fontsize=8, frameon=False)
        top.set_ylim(-0.6, len(names) - 0.4)
    else:
        _empty(top, labels["empty"])

    title = labels["targets"]
    if len(summary.targets) > len(targets):
        title += "\n" + labels["more_targets"].format(
            shown=len(targets), total=len(summary.targets)
        )
    bottom.set_title(title, loc="left", fontsize=12)
    if targets:
        _targets(bottom, targets, labels)
    else:
        _empty(bottom, labels["empty"])

    for axis in (top, bottom):
        axis.spines[["top", "right"]].set_visible(False)
        axis.tick_params(axis="y", length=0)
    for text in figure.findobj(Text):
        if text.get_text():
            text.set_path_effects(
                [patheffects.withStroke(linewidth=0.45, foreground=text.get_color())]
            )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _targets(axis: Axes, targets: Sequence[TargetProgress], labels: dict[str, str]) -> None:
    rows = list(targets)[::-1]
    names = [_clip(f"{item.task_code or labels['goal']} {item.metric}", 22) for item in rows]
    percents = [_float(item.percent) for item in rows]
    colours = [
        COLOURS[Light.PENDING]
        if item.value is None
        else COLOURS[Light.YELLOW]
        if item.behind
        else COLOURS[Light.GREEN]
        for item in rows
    ]
    positions = list(range(len(rows)))
    axis.barh(positions, [min(max(p, 0), 120) for p in percents], color=colours)
    axis.set_yticks(positions, names)
    axis.set_xlim(0, 125)
    axis.set_xlabel("%")
    axis.axvline(100, color="#555555", linewidth=0.8, linestyle=":")
    paced = [(index, item) for index, item in enumerate(rows) if item.expected_percent is not None]
    if paced:
        axis.scatter(
            [min(_float(item.expected_percent), 120) for _index, item in paced],
            [index for index, _item in paced],
            marker="|",
            s=180,
            linewidths=2,
            color="#222222",
            label=labels["pace"],
            zorder=3,
        )
        axis.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    for index, item in enumerate(rows):
        text = labels["no_value"] if item.value is None else f"{math.floor(_float(item.percent))}%"
        if item.value is not None and item.percent is None:
            text = _number(item.value)
        axis.text(
            min(max(percents[index], 0), 120) + 1.5,
            index,
            text,
            va="center",
            fontsize=8,
            color="#333333",
        )
    axis.set_ylim(-0.6, len(rows) - 0.4)


def _empty(axis: Axes, text: str) -> None:
    axis.text(0.5, 0.5, text, ha="center", va="center", transform=axis.transAxes, color="#777777")
    axis.set_xticks([])
    axis.set_yticks([])


def _float(value: Decimal | None) -> float:
    return 0.0 if value is None else float(value)


def _number(value: Decimal) -> str:
    return f"{value.normalize():f}"


def _clip(text: str, limit: int = LABEL_LIMIT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
