"""How the plan's and the reports' enums are shown: one place for every label and sign.

The glyphs (a light's emoji, a comparator's sign) are the same in every language. The names
(a role, a report status) are translated when they are shown, through the gettext catalogs and
the current aiogram I18n context (as `lazy_gettext` would): importing this module loads no
aiogram, so the command-line renderings (bot.plan_report) can use its signs.
"""

from __future__ import annotations

from collections.abc import Callable

from babel.support import LazyProxy

from bot.lights import Light
from bot.plan_model import Comparator, Role
from storage.enums import ReportStatus


def _translate(message: str) -> str:
    from aiogram.utils.i18n import gettext  # noqa: PLC0415 - only when a name is shown

    return gettext(message)


def __(message: str) -> LazyProxy:
    """A name translated when it is shown, in the locale current then."""
    return LazyProxy(_translate, message, enable_cache=False)


LIGHT_EMOJI = {Light.RED: "🔴", Light.YELLOW: "🟡", Light.PENDING: "⚪", Light.GREEN: "🟢"}
DONE_MARK = "✅"  # a lookup line its department has reported done (a green light)


def light_mark(light: Light, *, done: bool = False) -> str:
    """The emoji of a light; the lookups mark a line reported done with ✅ instead of 🟢."""
    return DONE_MARK if done and light is Light.GREEN else LIGHT_EMOJI[light]


COMPARATOR_SIGNS = {
    Comparator.AT_LEAST: "≥",
    Comparator.MORE_THAN: ">",
    Comparator.AT_MOST: "≤",
    Comparator.LESS_THAN: "<",
}

# The Chinese words of the plan documents, for the bilingual command-line tables.
ROLE_WORDS_ZH = {Role.LEAD: "牵头", Role.SUPPORT: "配合"}

ROLE_NAMES = {Role.LEAD: __("lead"), Role.SUPPORT: __("support")}

STATUS_NAMES = {
    ReportStatus.ON_TRACK: __("on track"),
    ReportStatus.AT_RISK: __("at risk"),
    ReportStatus.BLOCKED: __("blocked"),
    ReportStatus.DONE: __("done"),
    None: __("no report yet"),
}


def role_tag(role: Role, gettext: Callable[[str], str] = _translate) -> str:
    """ "(lead)" or "(support)" after a task's name; `gettext`: the caller's own (the summary
    remembers its translations)."""
    _ = gettext
    return _("(lead)") if role is Role.LEAD else _("(support)")
