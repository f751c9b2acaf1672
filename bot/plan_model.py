"""Plain values the plan parser produces and the importer stores (no database, no Telegram)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum


class Role(StrEnum):
    LEAD = "lead"  # 牵头
    SUPPORT = "support"  # 配合


class DepartmentKind(StrEnum):
    AGENCY = "agency"  # 县发改局, 县委组织部, 生态环境局长兴分局
    TOWNSHIP = "township"  # 雉城街道, 某某镇
    TOWNSHIP_GROUP = "township_group"  # 各乡镇<街道、园区>: every township, street and park
    COMPANY = "company"  # state-owned: 长兴城投集团, 县供电公司
    ZONE = "zone"  # 县开发区, 国家大学科技园
    ORGANIZATION = "organization"  # people's organisations: 县妇联, 团县委


class Comparator(StrEnum):
    AT_LEAST = ">="  # 以上, 达到, 不低于
    MORE_THAN = ">"  # 超过, 高于
    AT_MOST = "<="  # 以下, 以内, 不超过, 控制在
    LESS_THAN = "<"  # 低于


class Cycle(StrEnum):
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    HALF_YEARLY = "half_yearly"
    YEARLY = "yearly"


@dataclass(frozen=True, slots=True)
class ParsedUnit:
    name: str
    role: Role
    aliases: tuple[str, ...] = ()
    kind: DepartmentKind = DepartmentKind.AGENCY


@dataclass(frozen=True, slots=True)
class ParsedTarget:
    text: str  # the clause as written: 累计筹集保障性租赁住房9000套以上
    metric: str  # what is measured: 累计筹集保障性租赁住房
    value: Decimal
    unit: str  # 套, %, 亿元, 个
    comparator: Comparator
    deadline: date | None
    baseline: Decimal | None = None  # 由52%提高到60% -> 52


@dataclass(frozen=True, slots=True)
class ParsedTask:
    code: str  # numbering path, stable across revisions: "2.1.3" = 二、(一)3.
    section: str  # 实施优化空间规划布局行动
    title: str  # 优化全域发展布局
    text: str  # the item's full text without its number and responsibility clause
    units: tuple[ParsedUnit, ...]
    deadline: date
    cycle: Cycle | None = None  # only when the task states one (每季度报送)
    targets: tuple[ParsedTarget, ...] = ()

    @property
    def lead_units(self) -> tuple[ParsedUnit, ...]:
        return tuple(unit for unit in self.units if unit.role is Role.LEAD)


@dataclass(frozen=True, slots=True)
class ParsedRequirement:
    code: str  # "3.1"
    section: str  # 保障措施
    title: str  # 强化统筹协调
    text: str


@dataclass(frozen=True, slots=True)
class ParsedPlan:
    title: str
    doc_number: str | None  # 长政办发〔2023〕65号
    issuer: str | None  # 长兴县政府办公室
    issued_on: date | None
    horizon: date  # the latest 到YYYY年 of the goals; default deadline of every task
    goals: tuple[ParsedTarget, ...] = ()
    tasks: tuple[ParsedTask, ...] = ()
    requirements: tuple[ParsedRequirement, ...] = field(default=())

    def units(self) -> list[ParsedUnit]:
        """Every distinct unit in document order (first appearance wins for name and kind)."""
        seen: dict[str, ParsedUnit] = {}
        for task in self.tasks:
            for unit in task.units:
                seen.setdefault(unit.name, unit)
        return list(seen.values())

    def to_dict(self) -> dict:
        """JSON-ready: ISO dates, numbers as int or float, enums as their values."""
        return _jsonable(asdict(self))


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, StrEnum):
        return value.value
    return value
