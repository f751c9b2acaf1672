"""Turn a policy document (实施意见 / 实施方案) into a `ParsedPlan`.

The parser reads the numbered outline (一、 / (一) / 1. / (1)), finds each item's responsibility
clause ("(责任单位:A、B)" or "(牵头单位:A;配合单位:B)"), and pulls deadlines and numeric
targets out of the text. It never touches the database: `storage.plans.import_plan` stores
what it returns.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from bot.plan_model import (
    Comparator,
    Cycle,
    DepartmentKind,
    ParsedPlan,
    ParsedRequirement,
    ParsedTarget,
    ParsedTask,
    ParsedUnit,
    Role,
)
from bot.plan_text import (
    CLOSE_BRACKETS,
    OPEN_BRACKETS,
    PlanFormatError,
    cn_number,
    mask_quoted,
    split_outside_brackets,
)

__all__ = ["PlanFormatError", "parse_plan", "parse_plan_text"]

MAX_PLAN_BYTES = 5 * 1024 * 1024

# ---------------------------------------------------------------------------------------------
# Outline
# ---------------------------------------------------------------------------------------------

_CN_DIGITS = "〇零一二三四五六七八九十百"
_HEADING_PATTERNS: tuple[tuple[int, re.Pattern[str]], ...] = (
    (1, re.compile(rf"^([{_CN_DIGITS}]+)[、.]\s*(.*)$")),
    (2, re.compile(rf"^[(]([{_CN_DIGITS}]+)[)]\s*(.*)$")),
    (3, re.compile(r"^(\d{1,3})(?:、|\.(?!\d))\s*(.*)$")),
    (4, re.compile(r"^[(](\d{1,3})[)]\s*(.*)$")),
)


@dataclass
class _Node:
    level: int
    number: int
    text: str
    parent: _Node | None = None
    children: list[_Node] = field(default_factory=list)

    @property
    def path(self) -> list[int]:
        node: _Node | None = self
        numbers: list[int] = []
        while node is not None and node.level > 0:
            numbers.append(node.number)
            node = node.parent
        return numbers[::-1]


def _classify_line(line: str) -> tuple[int, int, str] | None:
    for level, pattern in _HEADING_PATTERNS:
        match = pattern.match(line)
        if match:
            number = match.group(1)
            value = int(number) if number.isdigit() else cn_number(number)
            if value is not None:
                return level, value, match.group(2).strip()
    return None


def _build_outline(lines: list[str]) -> tuple[_Node, list[str]]:
    """Numbered lines become a tree; unnumbered lines continue the open item (or the preamble)."""
    root = _Node(level=0, number=0, text="")
    preamble: list[str] = []
    current = root
    for line in lines:
        heading = _classify_line(line)
        if heading is None:
            if current is root:
                preamble.append(line)
            else:
                current.text += line
            continue
        level, number, text = heading
        parent = current
        while parent.level >= level:
            parent = parent.parent or root
        node = _Node(level=level, number=number, text=text, parent=parent)
        parent.children.append(node)
        current = node
    return root, preamble


def _walk(node: _Node):
    for child in node.children:
        yield child
        yield from _walk(child)


# ---------------------------------------------------------------------------------------------
# Responsibility clause and units
# ---------------------------------------------------------------------------------------------

_CLAUSE_START = re.compile(
    r"[(]\s*(?:主要)?(?:责任单位|责任部门|牵头单位|牵头部门|负责单位|实施单位)\s*[:]"
)
_LEAD_LABELS = ("牵头单位", "牵头部门", "牵头")
_SUPPORT_LABELS = ("配合单位", "配合部门", "协同单位", "协办单位", "参与单位", "配合")
_RESPONSIBLE_LABELS = ("主要责任单位", "责任单位", "责任部门", "负责单位", "实施单位")
_UNIT_NOISE = re.compile(r"(按职责分工负责|按职责分工|分别负责|负责|等单位|等部门)$")


def _find_clause(text: str) -> tuple[str, str] | None:
    """Return (clause body, text without the clause), matching nested brackets."""
    matches = list(_CLAUSE_START.finditer(text))
    if not matches:
        return None
    start = matches[-1].start()
    depth = 0
    for index in range(start, len(text)):
        char = text[index]
        if char in OPEN_BRACKETS:
            depth += 1
        elif char in CLOSE_BRACKETS:
            depth -= 1
            if depth == 0:
                body = text[start + 1 : index].strip()
                rest = (text[:start] + text[index + 1 :]).strip()
                return body, rest.rstrip(";")
    raise PlanFormatError(f"unclosed responsibility clause: {text[start : start + 40]}…")


def _strip_label(segment: str) -> tuple[str | None, str]:
    """'牵头单位:A、B' -> ('lead', 'A、B'); '责任单位:A' -> ('responsible', 'A')."""
    label, colon, rest = segment.partition(":")
    if not colon:
        return None, segment
    label = label.strip()
    if label in _LEAD_LABELS:
        return "lead", rest
    if label in _SUPPORT_LABELS:
        return "support", rest
    if label in _RESPONSIBLE_LABELS:
        return "responsible", rest
    return None, segment


def _parse_clause(body: str) -> tuple[ParsedUnit, ...]:
    """Units in order with their roles; without explicit labels the first unit leads."""
    named: list[tuple[str, Role]] = []
    for segment in split_outside_brackets(body, ";"):
        label, names_text = _strip_label(segment.strip())
        for raw_name in split_outside_brackets(names_text, "、,"):
            name, role = _unit_role(raw_name.strip(), label, first=not named)
            if name:
                named.append((name, role))
    if named and all(role is Role.SUPPORT for _, role in named):
        named[0] = (named[0][0], Role.LEAD)
    units: dict[str, ParsedUnit] = {}
    for raw_name, role in named:
        name, aliases = _split_alternate(raw_name)
        units.setdefault(name, ParsedUnit(name, role, aliases, classify_unit(name)))
    return tuple(units.values())


def _unit_role(raw: str, label: str | None, *, first: bool) -> tuple[str, Role]:
    raw = _UNIT_NOISE.sub("", raw).strip(" 。.")
    if raw.endswith("牵头"):
        return raw.removesuffix("牵头"), Role.LEAD
    if raw.endswith("配合"):
        return raw.removesuffix("配合"), Role.SUPPORT
    if label == "lead":
        return raw, Role.LEAD
    if label == "support":
        return raw, Role.SUPPORT
    return raw, Role.LEAD if first else Role.SUPPORT


_ALTERNATE = re.compile(r"^(?P<outer>[^<〈(]+)[<〈(](?P<inner>[^>〉)]+)[>〉)]$")


def _split_alternate(raw: str) -> tuple[str, tuple[str, ...]]:
    """县委改革办<县数改办> -> (县委改革办, (县数改办,)).

    各乡镇<街道、园区> stays one group unit, named 各乡镇(街道、园区).
    """
    match = _ALTERNATE.match(raw)
    if not match:
        return raw, ()
    outer, inner = match.group("outer").strip(), match.group("inner").strip()
    if outer.startswith("各"):
        # A group such as 各乡镇(街道、园区): the bracket extends the group, it is not another unit.
        canonical = f"{outer}({inner})"
        aliases = tuple(dict.fromkeys(alias for alias in (raw, outer) if alias != canonical))
        return canonical, aliases
    return outer, tuple(alias.strip() for alias in re.split(r"[、,]", inner) if alias.strip())


_KIND_RULES: tuple[tuple[DepartmentKind, re.Pattern[str]], ...] = (
    (DepartmentKind.TOWNSHIP_GROUP, re.compile(r"^各")),
    (DepartmentKind.COMPANY, re.compile(r"(集团|公司)$")),
    (DepartmentKind.ZONE, re.compile(r"(开发区|园区|科技园|度假区|高新区|新区|产业园)(管委会)?$")),
    (
        DepartmentKind.ORGANIZATION,
        re.compile(r"(妇联|团县委|团市委|总工会|工商联|科协|残联|红十字会|侨联|文联)$"),
    ),
    (DepartmentKind.TOWNSHIP, re.compile(r"(街道|街道办事处|镇|乡)(人民政府)?$")),
)


def classify_unit(name: str) -> DepartmentKind:
    """Guess what kind of unit a name is; everything else is a government agency."""
    for kind, pattern in _KIND_RULES:
        if pattern.search(name):
            return kind
    return DepartmentKind.AGENCY


# ---------------------------------------------------------------------------------------------
# Deadlines
# ---------------------------------------------------------------------------------------------

_DATE_PATTERN = re.compile(
    r"(?P<year>(?:19|20)\d{2})年"
    r"(?:(?P<month>\d{1,2})月(?:(?P<day>\d{1,2})[日号])?(?P<month_end>底|末)?"
    r"|(?P<half>上半年|下半年)"
    r"|第?(?P<quarter>[一二三四1234])季度"
    r"|(?P<year_end>底|末)?)"
    r"(?P<before>前|之前|以前)?"
)
_QUARTER = {"一": 1, "二": 2, "三": 3, "四": 4, "1": 1, "2": 2, "3": 3, "4": 4}


@dataclass(frozen=True)
class _DateMention:
    start: int
    end: int
    value: date


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def _mention_date(match: re.Match[str]) -> date | None:
    year = int(match["year"])
    if match["month"]:
        return _month_or_day(year, int(match["month"]), match["day"])
    if match["half"]:
        return date(year, 6, 30) if match["half"] == "上半年" else date(year, 12, 31)
    if match["quarter"]:
        return _month_end(year, _QUARTER[match["quarter"]] * 3)
    return date(year, 12, 31)


def _month_or_day(year: int, month: int, day: str | None) -> date | None:
    """2026年6月 -> 2026-06-30; 2025年12月31日 -> 2025-12-31; None for an impossible date."""
    try:
        return date(year, month, int(day)) if day else _month_end(year, month)
    except ValueError:  # calendar.IllegalMonthError is a ValueError too
        return None


def find_deadlines(text: str, *, not_before: date | None = None) -> list[_DateMention]:
    """Every forward-looking date in `text` (quoted names and document numbers are masked).

    Dates before `not_before` (the plan's issue date) describe the past ("2000年以前建成的老旧小区")
    and are not deadlines.
    """
    masked = mask_quoted(text)
    mentions = []
    for match in _DATE_PATTERN.finditer(masked):
        value = _mention_date(match)
        floor = date(not_before.year, 1, 1) if not_before else None
        if value is None or (floor and value < floor):
            continue
        mentions.append(_DateMention(match.start(), match.end(), value))
    return mentions


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------

# Longer units first so that 亿元 wins over 元 and 万平方米 over 平方米.
_UNITS = sorted(
    (
        "%",
        "‰",
        "个百分点",
        "亿元",
        "万元",
        "元",
        "万人",
        "人次",
        "人",
        "万平方米",
        "平方米",
        "万亩",
        "亩",
        "公里",
        "千米",
        "米",
        "万套",
        "套",
        "台",
        "个",
        "家",
        "所",
        "张",
        "辆",
        "座",
        "处",
        "条",
        "项",
        "户",
        "万户",
        "吨",
        "万吨",
        "兆瓦",
        "万千瓦",
        "千瓦",
        "床",
        "班",
        "名",
        "位",
        "栋",
        "幢",
        "片",
        "根",
        "只",
        "艘",
        "公顷",
        "立方米",
        "万立方米",
        "千瓦时",
        "度",
    ),
    key=len,
    reverse=True,
)
_COMPARATOR_BEFORE: tuple[tuple[str, Comparator], ...] = (
    ("不低于", Comparator.AT_LEAST),
    ("不少于", Comparator.AT_LEAST),
    ("不超过", Comparator.AT_MOST),
    ("不高于", Comparator.AT_MOST),
    ("控制在", Comparator.AT_MOST),
    ("降低到", Comparator.AT_MOST),
    ("降低至", Comparator.AT_MOST),
    ("下降到", Comparator.AT_MOST),
    ("下降至", Comparator.AT_MOST),
    ("降至", Comparator.AT_MOST),
    ("超过", Comparator.MORE_THAN),
    ("高于", Comparator.MORE_THAN),
    ("多于", Comparator.MORE_THAN),
    ("低于", Comparator.LESS_THAN),
    ("少于", Comparator.LESS_THAN),
)
_COMPARATOR_AFTER = {
    "以上": Comparator.AT_LEAST,
    "以下": Comparator.AT_MOST,
    "以内": Comparator.AT_MOST,
}
_REACH_WORDS = re.compile(
    r"(?:达到|达|提高到|提高至|提升到|提升至|增加到|增加至|增长到|扩大到|突破|实现|保持在|稳定在|为|各)$"
)
_TARGET_PATTERN = re.compile(
    r"(?<![\dA-Za-z.+])(?P<value>\d+(?:\.\d+)?)\s*"
    rf"(?P<unit>{'|'.join(re.escape(unit) for unit in _UNITS)})"
    r"(?P<after>以上|以下|以内|左右)?"
    r"(?![A-Za-z+])"
)
_BASELINE_PATTERN = re.compile(
    r"[由从]\s*(?P<value>\d+(?:\.\d+)?)\s*\S{0,4}?"
    r"(?:提高|提升|增加|增长|扩大|降低|下降|减少|压减)(?:到|至)$"
)
_CLAUSE_BREAK = re.compile(r"[,;。:、]")
_LEADING_NOISE = re.compile(r"^(?:并|和|及|且|其中|同时|力争|确保|全县|全市)")


def _clause_start(masked: str, position: int) -> int:
    breaks = [match.end() for match in _CLAUSE_BREAK.finditer(masked, 0, position)]
    return breaks[-1] if breaks else 0


def _comparator(before: str, after: str | None) -> Comparator:
    if after in _COMPARATOR_AFTER:
        return _COMPARATOR_AFTER[after]
    for word, comparator in _COMPARATOR_BEFORE:
        if before.endswith(word):
            return comparator
    return Comparator.AT_LEAST


def _metric(before: str) -> str:
    metric = _LEADING_NOISE.sub("", before.strip())
    for word, _ in _COMPARATOR_BEFORE:
        metric = metric.removesuffix(word)
    return _REACH_WORDS.sub("", metric).strip()


def find_targets(
    text: str, *, default_deadline: date | None, not_before: date | None = None
) -> list[ParsedTarget]:
    """Numeric targets in `text`; each takes the nearest date before it in its sentence."""
    masked = mask_quoted(text)
    deadlines = find_deadlines(text, not_before=not_before)
    targets: list[ParsedTarget] = []
    for match in _TARGET_PATTERN.finditer(masked):
        if _is_baseline(masked, match) or _is_date_part(masked, match):
            continue
        start = _clause_start(masked, match.start())
        before = text[start : match.start()]
        baseline = _BASELINE_PATTERN.search(masked[start : match.start()])
        metric = _metric(before[: baseline.start()] if baseline else before)
        if not metric or re.search(r"\d", metric[-1:]):
            continue
        targets.append(
            ParsedTarget(
                text=text[start : match.end()].strip(),
                metric=metric,
                value=Decimal(match["value"]),
                unit=match["unit"],
                comparator=_comparator(before.strip(), match["after"]),
                deadline=_deadline_for(masked, match.start(), deadlines) or default_deadline,
                baseline=Decimal(baseline["value"]) if baseline else None,
            )
        )
    return targets


def _is_baseline(masked: str, match: re.Match[str]) -> bool:
    """The 52 in 由52%提高到60% is where the target starts from, not a target."""
    tail = masked[match.end() : match.end() + 6]
    return bool(
        re.match(r"(?:提高|提升|增加|增长|扩大|降低|下降|减少|压减)(?:到|至)", tail)
    ) and bool(re.search(r"[由从]\s*$", masked[max(0, match.start() - 2) : match.start()]))


def _is_date_part(masked: str, match: re.Match[str]) -> bool:
    """'3岁以下', '2027年' and similar are qualifiers; the unit list already excludes most."""
    return masked[match.end() - len(match["unit"]) - 1 : match.end()].endswith(("年", "月", "日"))


def _deadline_for(masked: str, position: int, deadlines: list[_DateMention]) -> date | None:
    sentence_start = max(masked.rfind("。", 0, position), -1) + 1
    sentence_end = masked.find("。", position)
    sentence_end = len(masked) if sentence_end < 0 else sentence_end
    in_sentence = [d for d in deadlines if sentence_start <= d.start < sentence_end]
    earlier = [d for d in in_sentence if d.start < position]
    if earlier:
        return earlier[-1].value
    return in_sentence[0].value if in_sentence else None


# ---------------------------------------------------------------------------------------------
# Reporting cycle
# ---------------------------------------------------------------------------------------------

_CYCLE_PATTERN = re.compile(
    r"(?P<period>每周|每月|每季度?|按季度?|每半年|每年)[^。;,]{0,8}?(?:报送|上报|报告|报)"
)
_CYCLES = {
    "每周": Cycle.WEEKLY,
    "每月": Cycle.MONTHLY,
    "每季": Cycle.QUARTERLY,
    "每季度": Cycle.QUARTERLY,
    "按季": Cycle.QUARTERLY,
    "按季度": Cycle.QUARTERLY,
    "每半年": Cycle.HALF_YEARLY,
    "每年": Cycle.YEARLY,
}


def find_cycle(text: str) -> Cycle | None:
    match = _CYCLE_PATTERN.search(text)
    return _CYCLES[match["period"]] if match else None


# ---------------------------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------------------------

_DOC_NUMBER = re.compile(r"[\u4e00-\u9fff]{1,12}[〔\[(]\s*\d{4}\s*[〕\])]\s*\d{1,4}\s*号")
_META_KEYS = {
    "文件编号": "doc_number",
    "发文字号": "doc_number",
    "文号": "doc_number",
    "发文时间": "issued_on",
    "成文日期": "issued_on",
    "发布日期": "issued_on",
    "发布机构": "issuer",
    "发文机关": "issuer",
    "发文单位": "issuer",
    "标题": "title",
    "名称": "title",
}
_ISO_OR_CN_DATE = re.compile(r"(\d{4})(?:[-/.年])(\d{1,2})(?:[-/.月])(\d{1,2})日?")
_TITLE_LINE = re.compile(r"^.{0,40}关于.{2,80}(?:意见|方案|通知|办法|规划|计划|决定)$")


def _parse_date(text: str) -> date | None:
    match = _ISO_OR_CN_DATE.search(text)
    if not match:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def _metadata(preamble: list[str], tail: list[str]) -> dict[str, str]:
    """Key/value header lines ('文件编号: | 长政办发〔2023〕65号 |') and a title line, if any."""
    found: dict[str, str] = {}
    for line in preamble:
        cells = [cell.strip() for cell in re.split(r"[|\t]", line) if cell.strip()]
        pairs = _meta_pairs(cells)
        for key, value in pairs:
            found.setdefault(_META_KEYS[key], value)
        if not pairs and "title" not in found and _TITLE_LINE.match(line) and "。" not in line:
            found["title"] = line
        if not pairs and "doc_number" not in found and _DOC_NUMBER.fullmatch(line):
            found["doc_number"] = line
    # Signature block: the issuer's name followed by the date on the last lines.
    if len(tail) >= 2 and _ISO_OR_CN_DATE.fullmatch(tail[-1]):
        found.setdefault("issued_on", tail[-1])
        found.setdefault("issuer", tail[-2])
    return found


def _meta_pairs(cells: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for index, cell in enumerate(cells):
        key, colon, inline_value = cell.partition(":")
        key = key.strip()
        if not colon or key not in _META_KEYS:
            continue
        value = inline_value.strip() or (cells[index + 1] if index + 1 < len(cells) else "")
        if value and value.rstrip(":").strip() not in _META_KEYS:
            pairs.append((key, value))
    return pairs


def _derived_title(preamble_text: str, issuer: str | None, doc_number: str | None) -> str:
    """Without a title line, 'the opinion proposed to implement 《关于…》' is the best name."""
    cited = re.search(r"《(关于[^《》〈〉]{4,60})》", preamble_text)
    if cited and re.search(r"提出(?:如下|以下)", preamble_text):
        # The document implements the cited one; the issuer's name tells the two apart.
        return f"{issuer or ''}{cited.group(1)}"
    return " ".join(part for part in (issuer, doc_number) if part) or "未命名方案"


# ---------------------------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------------------------

_GOALS_TITLE = re.compile(r"(主要目标|发展目标|工作目标|总体目标|目标任务|^目标)")
# Full-width ASCII forms (U+FF01..U+FF5E: ( ) : ; , % 0-9 …) become ASCII before parsing, so
# every pattern in this module is written once, with ASCII punctuation.
_NORMALIZE = {0xFF01 + offset: 0x21 + offset for offset in range(94)} | {0x3000: 0x20}


def _title_and_body(text: str) -> tuple[str, str]:
    first_stop = re.search(r"[。]", text)
    if first_stop and first_stop.start() <= 40:
        return text[: first_stop.start()].strip(), text
    first_comma = re.search(r"[,:]", text)
    if first_comma and first_comma.start() <= 30:
        return text[: first_comma.start()].strip(), text
    return (text[:30] + "…" if len(text) > 30 else text), text


def _code(node: _Node) -> str:
    return ".".join(str(number) for number in node.path)


def _section_title(node: _Node) -> str:
    parent = node.parent
    return _title_and_body(parent.text)[0] if parent and parent.level else ""


def parse_plan_text(raw_text: str) -> ParsedPlan:
    """Parse a plan already decoded to text. Raises PlanFormatError when it is not a plan."""
    lines = [line.strip() for line in raw_text.translate(_NORMALIZE).splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise PlanFormatError("the file is empty")
    root, preamble = _build_outline(lines)
    last_node = list(_walk(root))[-1] if root.children else None
    tail = _signature_lines(last_node)
    meta = _metadata(preamble, tail)
    issued_on = _parse_date(meta.get("issued_on", ""))
    nodes = list(_walk(root))
    clauses = {id(node): _find_clause(node.text) for node in nodes}
    goals_node = next(
        (
            n
            for n in nodes
            if not clauses[id(n)] and _GOALS_TITLE.search(_title_and_body(n.text)[0])
        ),
        None,
    )
    if not any(clauses.values()):
        raise PlanFormatError(
            "no tasks found: expected numbered items ending in (责任单位:…) or (牵头单位:…)"
        )
    horizon = _horizon(goals_node, nodes, issued_on)
    tasks = [
        _task(node, clause, horizon, issued_on)
        for node in nodes
        if (clause := clauses[id(node)]) is not None
    ]
    first_task_top = min(node.path[0] for node in nodes if clauses[id(node)])
    requirements = [
        _requirement(node)
        for node in nodes
        if not node.children and not clauses[id(node)] and node.path[0] >= first_task_top
    ]
    goals = (
        find_targets(goals_node.text, default_deadline=horizon, not_before=issued_on)
        if goals_node
        else []
    )
    doc_number = meta.get("doc_number")
    issuer = meta.get("issuer")
    return ParsedPlan(
        title=meta.get("title") or _derived_title("".join(preamble), issuer, doc_number),
        doc_number=doc_number,
        issuer=issuer,
        issued_on=issued_on,
        horizon=horizon,
        goals=tuple(goals),
        tasks=tuple(tasks),
        requirements=tuple(requirements),
    )


def _signature_lines(last_node: _Node | None) -> list[str]:
    """The issuer and date after the last item arrive as its continuation lines; split them off."""
    if last_node is None:
        return []
    match = re.search(r"(?:。)([^。]{2,40}?)((?:19|20)\d{2}年\d{1,2}月\d{1,2}日)$", last_node.text)
    if not match:
        return []
    last_node.text = last_node.text[: match.start() + 1]
    return [match.group(1), match.group(2)]


def _horizon(goals_node: _Node | None, nodes: list[_Node], issued_on: date | None) -> date:
    if goals_node:
        in_goals = find_deadlines(goals_node.text, not_before=issued_on)
        if in_goals:
            return max(mention.value for mention in in_goals)
    anywhere = [m.value for node in nodes for m in find_deadlines(node.text, not_before=issued_on)]
    if anywhere:
        return max(anywhere)
    raise PlanFormatError("no target year found (expected a goal such as 到2027年…)")


def _task(
    node: _Node, clause: tuple[str, str], horizon: date, issued_on: date | None
) -> ParsedTask:
    clause_body, text = clause
    units = _parse_clause(clause_body)
    if not units:
        raise PlanFormatError(f"item {_code(node)} names no responsible unit: ({clause_body})")
    own_deadlines = find_deadlines(text, not_before=issued_on)
    deadline = max((m.value for m in own_deadlines), default=horizon)
    title, body = _title_and_body(text)
    return ParsedTask(
        code=_code(node),
        section=_section_title(node),
        title=title,
        text=body,
        units=units,
        deadline=deadline,
        cycle=find_cycle(text),
        targets=tuple(find_targets(text, default_deadline=deadline, not_before=issued_on)),
    )


def _requirement(node: _Node) -> ParsedRequirement:
    title, body = _title_and_body(node.text)
    return ParsedRequirement(code=_code(node), section=_section_title(node), title=title, text=body)


def decode_plan_bytes(data: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030; anything else is not a plan."""
    if not data.strip():
        raise PlanFormatError("the file is empty")
    if len(data) > MAX_PLAN_BYTES:
        raise PlanFormatError(f"the file is larger than {MAX_PLAN_BYTES // (1024 * 1024)} MB")
    if b"\x00" in data:
        raise PlanFormatError("the file is binary, not text")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _looks_like_text(text):
            return text
    raise PlanFormatError("the file is not UTF-8 or GB18030 text")


def _looks_like_text(text: str) -> bool:
    controls = sum(1 for char in text if ord(char) < 32 and char not in "\r\n\t\f")
    return controls <= len(text) // 100


def parse_plan(data: bytes) -> ParsedPlan:
    """Parse a plan file's bytes."""
    return parse_plan_text(decode_plan_bytes(data))
