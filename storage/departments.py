"""Merging and renaming departments: a revision renames a unit (县建设局 -> 县住房和城乡建设局), and
the people and history of the old name must follow it, or its liaisons silently stop getting work.

One transaction: on any error nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.transactions import in_transaction

from storage.models import Assignment, Delivery, Department, InviteToken, Liaison, Report
from storage.plan_queries import find_department


class DepartmentError(Exception):
    """A merge or rename that cannot be done; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class MergeResult:
    old: str
    new: str
    renamed: bool  # no department had the new name: the old one was renamed in place
    liaisons: int = 0
    invitations: int = 0
    reports: int = 0
    deliveries: int = 0
    assignments: int = 0
    duplicates: int = 0  # assignments dropped because the new department was on the task already

    def describe(self) -> str:
        if self.renamed:
            return f"Renamed {self.old} to {self.new}; {self.old} is kept as an alias."
        return (
            f"Merged {self.old} into {self.new}: {self.liaisons} liaison(s), "
            f"{self.invitations} invitation(s), {self.reports} report(s), "
            f"{self.deliveries} delivery record(s), {self.assignments} task assignment(s) moved"
            + (f", {self.duplicates} duplicate assignment(s) dropped" if self.duplicates else "")
            + f"; {self.old} is now an alias of {self.new}."
        )


def _aliases(target: Department, *names: str) -> list[str]:
    merged = list(target.aliases)
    for name in names:
        if name != target.name and name not in merged:
            merged.append(name)
    return merged


async def merge_departments(old_name: str, new_name: str, *, create: bool = False) -> MergeResult:
    """Move everything of OLD to NEW and delete OLD; OLD's name and aliases become NEW's aliases.

    With `create` and no department called NEW (nor having it as an alias), OLD is renamed.
    """
    new_name = new_name.strip()
    if not new_name:
        raise DepartmentError("the new department name is empty")
    async with in_transaction():
        old = await find_department(old_name)
        if old is None:
            raise DepartmentError(f"unknown department: {old_name.strip()}")
        new = await find_department(new_name)
        if new is None:
            if not create:
                raise DepartmentError(
                    f"unknown department: {new_name} "
                    f"(to give {old.name} a new name: duban department rename)"
                )
            former = old.name
            old.aliases = [alias for alias in [former, *old.aliases] if alias != new_name]
            old.name = new_name
            await old.save(update_fields=["name", "aliases"])
            return MergeResult(former, new_name, renamed=True)
        if new.id == old.id:
            raise DepartmentError(f"{old_name.strip()} and {new_name} are the same department")
        if await Liaison.filter(department_id=new.id, is_lead=True, active=True).exists():
            await Liaison.filter(department_id=old.id).update(is_lead=False)
        liaisons = await Liaison.filter(department_id=old.id).update(department_id=new.id)
        invitations = await InviteToken.filter(department_id=old.id).update(department_id=new.id)
        reports = await Report.filter(department_id=old.id).update(department_id=new.id)
        deliveries = await Delivery.filter(department_id=old.id).update(department_id=new.id)
        on_tasks = await Assignment.filter(department_id=new.id).values_list("task_id", flat=True)
        duplicates = Assignment.filter(department_id=old.id, task_id__in=list(on_tasks))
        dropped = await duplicates.count() if on_tasks else 0
        if dropped:
            await duplicates.delete()
        assignments = await Assignment.filter(department_id=old.id).update(department_id=new.id)
        new.aliases = _aliases(new, old.name, *old.aliases)
        await new.save(update_fields=["aliases"])
        await old.delete()
        return MergeResult(
            old.name,
            new.name,
            renamed=False,
            liaisons=liaisons,
            invitations=invitations,
            reports=reports,
            deliveries=deliveries,
            assignments=assignments,
            duplicates=dropped,
        )
