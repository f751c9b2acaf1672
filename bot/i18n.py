"""gettext catalogs: locales/<lang>/LC_MESSAGES/*.po merged into one messages.mo per language.

Each feature keeps its own .po file (common.po, lookup.po, reports.po, …) so that work on one
feature never conflicts with another; aiogram's I18n loads the single merged domain.
"""

from __future__ import annotations

from pathlib import Path

from aiogram.utils.i18n import I18n
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from bot.settings import SUPPORTED_LOCALES

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"


def read_catalogs(locale: str, locales_dir: Path = LOCALES_DIR) -> Catalog:
    """Every .po of one language, merged (a msgid defined twice keeps its first translation)."""
    merged = Catalog(locale=locale, domain=DOMAIN)
    for po_path in sorted((locales_dir / locale / "LC_MESSAGES").glob("*.po")):
        with po_path.open("rb") as po_file:
            for message in read_po(po_file, locale=locale):
                if message.id and message.id not in merged:
                    merged[message.id] = message
    return merged


def compile_catalogs(locales_dir: Path = LOCALES_DIR) -> list[Path]:
    """Write each language's messages.mo when one of its .po files is newer; return those written.

    An editable install runs no build hooks, so the bot and the tests compile on start: it takes
    milliseconds, and a stale catalog can never be loaded.
    """
    written = []
    for locale in SUPPORTED_LOCALES:
        folder = locales_dir / locale / "LC_MESSAGES"
        sources = list(folder.glob("*.po"))
        mo_path = folder / f"{DOMAIN}.mo"
        newest = max((path.stat().st_mtime for path in sources), default=0.0)
        if not sources or (mo_path.exists() and mo_path.stat().st_mtime >= newest):
            continue
        with mo_path.open("wb") as mo_file:
            write_mo(mo_file, read_catalogs(locale, locales_dir))
        written.append(mo_path)
    return written


def build_i18n(default_locale: str) -> I18n:
    compile_catalogs()
    return I18n(path=LOCALES_DIR, default_locale=default_locale, domain=DOMAIN)


def pick_locale(chosen: str | None, telegram_language: str | None, default: str) -> str:
    """What the user chose with /lang, else Telegram's language when supported, else the default."""
    if chosen in SUPPORTED_LOCALES:
        return chosen
    language = (telegram_language or "").split("-")[0].lower()
    return language if language in SUPPORTED_LOCALES else default
