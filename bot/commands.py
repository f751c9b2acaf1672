"""The bot's slash commands: who may use each, and its localized menu description."""

from __future__ import annotations

from dataclasses import dataclass

from aiogram.types import BotCommand
from aiogram.utils.i18n import lazy_gettext as __

from bot.people import Access

_RANK = {Access.GUEST: 0, Access.OBSERVER: 1, Access.LIAISON: 2, Access.COORDINATOR: 3}


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    description: object  # a lazy gettext string, resolved in the reader's language
    access: Access = Access.GUEST
    in_groups: bool = True
    # False: of the groups, only the coordination group (what it shows is for members: report
    # texts, liaison names), so other groups neither list nor answer it.
    any_group: bool = True
    liaison_only: bool = False  # /report: coordinators look, liaisons report
    not_for_liaisons: bool = False  # /summary: the coordination view (coordinators, observers)

    def allowed(self, access: Access) -> bool:
        if self.liaison_only:
            return access is Access.LIAISON
        if self.not_for_liaisons and access is Access.LIAISON:
            return False
        return _RANK[access] >= _RANK[self.access]


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("start", __("Start, or join your department with an invitation")),
    CommandSpec("help", __("What I can do for you")),
    CommandSpec("tasks", __("Tasks of a department"), Access.OBSERVER, any_group=False),
    CommandSpec("task", __("One task in full: /task CODE"), Access.OBSERVER, any_group=False),
    CommandSpec("dept", __("Find a department: /dept NAME"), Access.OBSERVER, any_group=False),
    CommandSpec("overdue", __("Tasks past their deadline"), Access.OBSERVER, any_group=False),
    CommandSpec("report", __("Report progress on a task"), in_groups=False, liaison_only=True),
    CommandSpec(
        "summary",
        __("The weekly summary, now"),
        Access.OBSERVER,
        any_group=False,
        not_for_liaisons=True,
    ),
    CommandSpec("invite", __("Invite a liaison: /invite DEPARTMENT"), Access.COORDINATOR, False),
    CommandSpec("grant", __("Make someone a coordinator: /grant USER_ID"), Access.COORDINATOR),
    CommandSpec("revoke", __("Take coordinator rights back: /revoke USER_ID"), Access.COORDINATOR),
    CommandSpec("unbind", __("Remove a liaison: /unbind USER_ID"), Access.COORDINATOR),
    CommandSpec("bindgroup", __("Make this group the coordination group"), Access.COORDINATOR),
    CommandSpec("whoami", __("Who I think you are")),
    CommandSpec("lang", __("Language: /lang zh or /lang en")),
)


# The coordination group's menu: what an observer may use there (a menu is per chat, not per
# member; coordinators' own commands stay in their private menus).
COORDINATION_MENU = Access.OBSERVER


def commands_for(
    access: Access, *, in_group: bool = False, coordination_group: bool = False
) -> list[CommandSpec]:
    """The commands `access` may use in a private chat, or in a group (`in_group`), which may be
    the coordination group."""
    return [
        spec
        for spec in COMMANDS
        if spec.allowed(access) and _usable_in(spec, in_group, coordination_group)
    ]


def _usable_in(spec: CommandSpec, in_group: bool, coordination_group: bool) -> bool:
    if not in_group:
        return True
    return spec.in_groups and (spec.any_group or coordination_group)


def command_menu(
    access: Access, *, in_group: bool = False, coordination_group: bool = False
) -> list[BotCommand]:
    """A menu for set_my_commands, in the current i18n locale."""
    return [
        BotCommand(command=spec.name, description=str(spec.description))
        for spec in commands_for(access, in_group=in_group, coordination_group=coordination_group)
    ]
