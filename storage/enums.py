"""Enums that only the database and the layers reading it use.

Role, DepartmentKind and Comparator come from the parser's plain-values module, `bot.plan_model`.
"""

from __future__ import annotations

from enum import StrEnum


class LiaisonRole(StrEnum):
    COORDINATOR = "coordinator"  # 督办人员: staff of the coordinating office, admins of the bot
    LIAISON = "liaison"  # 联络员: answers for a department
    OBSERVER = "observer"  # reads summaries, reports nothing


class ReportStatus(StrEnum):
    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    BLOCKED = "blocked"
    DONE = "done"
