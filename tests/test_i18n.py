"""Every user-facing string has a Chinese translation, and the catalogs compile."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir

from bot.i18n import compile_catalogs, read_catalogs

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("bot", "handlers", "jobs")
KEYWORDS = {"_": None, "__": None, "gettext": None, "lazy_gettext": None}


def source_msgids() -> dict[str, str]:
    """msgid -> where it is used, for every gettext call in the bot's source."""
    found: dict[str, str] = {}
    for folder in SOURCE_DIRS:
        for filename, lineno, message, _comments, _context in extract_from_dir(
            ROOT / folder, method_map=[("**.py", "python")], keywords=KEYWORDS
        ):
            msgid = message if isinstance(message, str) else message[0]
            if msgid:
                found.setdefault(msgid, f"{folder}/{filename}:{lineno}")
    return found


def test_the_source_uses_gettext_at_all():
    assert len(source_msgids()) > 20


def test_every_message_has_a_chinese_translation():
    catalog = read_catalogs("zh")
    missing = [
        f"{where}: {msgid!r}"
        for msgid, where in source_msgids().items()
        if msgid not in catalog or not catalog[msgid].string
    ]
    assert not missing, "no Chinese translation for:\n" + "\n".join(missing)


def test_every_message_is_in_the_english_catalog():
    catalog = read_catalogs("en")
    missing = [msgid for msgid in source_msgids() if msgid not in catalog]
    assert not missing


def test_chinese_translations_keep_placeholders():
    catalog = read_catalogs("zh")
    for message in catalog:
        if message.id and message.string:
            assert set(re.findall(r"\{\w*\}", message.id)) == set(
                re.findall(r"\{\w*\}", message.string)
            ), message.id


def test_catalogs_compile(tmp_path):
    for locale in ("zh", "en"):
        target = tmp_path / locale / "LC_MESSAGES"
        target.mkdir(parents=True)
        for po in (ROOT / "locales" / locale / "LC_MESSAGES").glob("*.po"):
            (target / po.name).write_bytes(po.read_bytes())
    written = compile_catalogs(tmp_path)
    assert sorted(path.parent.parent.name for path in written) == ["en", "zh"]


# ASCII punctuation right after a Chinese character: Chinese text uses full-width ,:;!? and ().
_HALF_WIDTH_AFTER_CJK = re.compile(r"[\u4e00-\u9fff][,:;!?()]")


def test_chinese_translations_use_full_width_punctuation():
    catalog = read_catalogs("zh")
    wrong = [
        message.string
        for message in catalog
        if message.id and _HALF_WIDTH_AFTER_CJK.search(message.string or "")
    ]
    assert not wrong
