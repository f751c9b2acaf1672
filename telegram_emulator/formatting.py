"""Text rules of the Bot API: HTML parse mode, UTF-16 offsets, bot_command entities.

The HTML parser follows the algorithm of tdlib's ``parse_html`` (the code behind the Bot API
server), so the same input fails with the same description and byte offset as on Telegram.
"""

from __future__ import annotations

import re
from typing import Any

from telegram_emulator.errors import ApiError

# Tag name -> entity type; "span" and "a" are resolved from their attributes.
_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
}
ALLOWED_TAGS = frozenset({*_SIMPLE_TAGS, "a", "span", "blockquote", "tg-emoji", "tg-time"})
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_SPACES = " \t\r\n\f\v"
_NAME_TOKEN = re.compile(r"[A-Za-z0-9.\-]*")
_ENTITY_RE = re.compile(r"&(?:#[xX]([0-9A-Fa-f]{1,6})|#([0-9]{1,7})|([A-Za-z]{2,4}));")

# A command: "/" + up to 64 word characters, optionally "@" + a bot username; it must not be
# glued to a preceding word or path (tdlib skips "a/b" and "http://x/y").
_COMMAND_RE = re.compile(r"(?<![\w/\\])/([A-Za-z0-9_]{1,64})(@[A-Za-z0-9_]{3,32})?(?![\w/\\@])")


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of entity offsets in the Bot API."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def _decode_entity(text: str, i: int) -> tuple[str, int] | None:
    """Decode the HTML entity at ``text[i] == '&'``; None if it is not one Telegram knows."""
    match = _ENTITY_RE.match(text, i)
    if match is None:
        return None
    hex_code, dec_code, name = match.groups()
    if name is not None:
        char = _NAMED_ENTITIES.get(name)
        if char is None:
            return None
        return char, match.end()
    code = int(hex_code, 16) if hex_code is not None else int(dec_code)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code), match.end()


class _Open:
    """A start tag waiting for its end tag."""

    __slots__ = ("argument", "name", "start")

    def __init__(self, name: str, argument: str, start: int) -> None:
        self.name = name
        self.argument = argument
        self.start = start  # index into the output text


def _bad(message: str) -> ApiError:
    return ApiError(400, f"Bad Request: can't parse entities: {message}")


# The two parsers below mirror tdlib's parse_html state machine branch for branch, so that errors
# match Telegram's; splitting them further would hide that correspondence.
def _parse_attributes(  # noqa: PLR0912, PLR0915
    text: str, i: int, tag: str, begin: int
) -> tuple[str, int]:
    """Parse attributes up to ``>``; return (the argument Telegram keeps, index of ``>``)."""
    n = len(text)
    argument = ""
    while i < n and text[i] != ">":
        while i < n and text[i] in _SPACES:
            i += 1
        if i < n and text[i] == ">":
            break
        name_begin = i
        while i < n and text[i] not in _SPACES and text[i] != "=" and text[i] != ">":
            i += 1
        attribute = text[name_begin:i].lower()
        if not attribute:
            where = _byte_offset(text, begin)
            raise _bad(f'Empty attribute name in the tag "{tag}" at byte offset {where}')
        while i < n and text[i] in _SPACES:
            i += 1
        if i < n and text[i] != "=":
            # Value-less attributes are only meaningful for <blockquote expandable>.
            if tag == "blockquote" and attribute == "expandable":
                argument = "expandable"
                continue
            raise _bad(
                "Expected equal sign in declaration of an attribute of the tag "
                f'"{tag}" at byte offset {_byte_offset(text, begin)}'
            )
        i += 1
        while i < n and text[i] in _SPACES:
            i += 1
        if i >= n:
            raise _bad(f'Unclosed start tag "{tag}" at byte offset {_byte_offset(text, begin)}')
        if text[i] in "'\"":
            quote = text[i]
            i += 1
            value_chars: list[str] = []
            while i < n and text[i] != quote:
                if text[i] == "&" and (decoded := _decode_entity(text, i)) is not None:
                    value_chars.append(decoded[0])
                    i = decoded[1]
                else:
                    value_chars.append(text[i])
                    i += 1
            value = "".join(value_chars)
            if i < n:
                i += 1
        else:
            match = _NAME_TOKEN.match(text, i)
            assert match is not None  # the pattern also matches the empty string
            value = match.group().lower()
            i = match.end()
            if i < n and text[i] not in _SPACES and text[i] != ">":
                raise _bad(f"Unexpected end of name token at byte offset {_byte_offset(text, i)}")
        if i >= n:
            raise _bad(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
        if (
            (tag == "a" and attribute == "href")
            or (tag == "tg-emoji" and attribute == "emoji-id")
            or (tag == "tg-time" and attribute == "unix")
        ):
            argument = value
        elif tag == "code" and attribute == "class" and value.startswith("language-"):
            argument = value.removeprefix("language-")
        elif tag == "span" and attribute == "class" and value.startswith("tg-"):
            argument = value.removeprefix("tg-")
    return argument, i


def _entity_for(tag: _Open, inner: str, offset: int, length: int) -> dict[str, Any] | None:
    entity: dict[str, Any] = {"offset": offset, "length": length}
    if tag.name in _SIMPLE_TAGS:
        entity["type"] = _SIMPLE_TAGS[tag.name]
        if tag.name == "code" and tag.argument:
            entity["language"] = tag.argument  # kept only if an enclosing pre takes it
    elif tag.name == "span":
        entity["type"] = "spoiler"
    elif tag.name == "blockquote":
        entity["type"] = "expandable_blockquote" if tag.argument else "blockquote"
    elif tag.name == "tg-emoji":
        if not tag.argument.isdigit():
            return None
        entity["type"] = "custom_emoji"
        entity["custom_emoji_id"] = tag.argument
    elif tag.name == "tg-time":
        if not tag.argument.isdigit():
            return None
        entity["type"] = "date_time"
        entity["unix_time"] = int(tag.argument)
    else:  # "a": an invalid or missing URL silently yields no entity, as on Telegram
        url = tag.argument or inner
        if not re.match(r"(?i)(https?|tg|ftp)://\S+$", url) and not re.match(
            r"(?i)[a-z0-9-]+(\.[a-z0-9-]+)+(/\S*)?$", url
        ):
            return None
        entity["type"] = "text_link"
        entity["url"] = url
    return entity


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:  # noqa: PLR0912, PLR0915
    """Turn Telegram-HTML into (plain text, entities) or raise the 400 Telegram would send."""
    out: list[str] = []
    out_len = 0  # characters in ``out`` so far
    utf16_at: list[int] = [0]  # UTF-16 offset of each output character position
    stack: list[_Open] = []
    entities: list[dict[str, Any]] = []
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        if ch == "&" and (decoded := _decode_entity(text, i)) is not None:
            out.append(decoded[0])
            utf16_at.append(utf16_at[-1] + utf16_len(decoded[0]))
            out_len += 1
            i = decoded[1]
            continue
        if ch != "<":
            out.append(ch)
            utf16_at.append(utf16_at[-1] + utf16_len(ch))
            out_len += 1
            i += 1
            continue
        begin = i
        i += 1
        if i < n and text[i] == "/":
            # An end tag closes the innermost open tag; its name may be omitted ("</>").
            if not stack:
                raise _bad(f"Unexpected end tag at byte offset {_byte_offset(text, begin)}")
            name_begin = i + 1
            while i < n and text[i] not in _SPACES and text[i] != ">":
                i += 1
            end_name = text[name_begin:i].lower()
            while i < n and text[i] in _SPACES:
                i += 1
            if i >= n or text[i] != ">":
                raise _bad(f"Unclosed end tag at byte offset {_byte_offset(text, begin)}")
            i += 1
            tag = stack.pop()
            if end_name and end_name != tag.name:
                raise _bad(
                    f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                    f'expected "</{tag.name}>", found "</{end_name}>"'
                )
            if out_len > tag.start:
                offset = utf16_at[tag.start]
                length = utf16_at[out_len] - offset
                inner = "".join(out[tag.start :])
                entity = _entity_for(tag, inner, offset, length)
                if (
                    tag.name == "pre"
                    and entities
                    and entities[-1]["type"] == "code"
                    and (entities[-1]["offset"] == offset and entities[-1]["length"] == length)
                ):
                    # <pre><code class="language-x">…</code></pre> is one pre entity.
                    code = entities.pop()
                    if "language" in code:
                        entity = {**entity, "language": code["language"]}  # type: ignore[dict-item]
                if entity is not None:
                    entities.append(entity)
            continue
        while i < n and text[i] not in _SPACES and text[i] != ">":
            i += 1
        if i >= n:
            raise _bad(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
        name = text[begin + 1 : i].lower()
        if name not in ALLOWED_TAGS:
            raise _bad(f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, begin)}')
        argument, i = _parse_attributes(text, i, name, begin)
        if name == "span" and argument != "spoiler":
            where = _byte_offset(text, begin)
            raise _bad(f'Tag "span" must have class "tg-spoiler" at byte offset {where}')
        i += 1  # skip ">"
        stack.append(_Open(name, argument, out_len))
    if stack:
        raise _bad(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)  # only pre blocks carry a language
    # Telegram lists entities by offset, outer entity first.
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def strip_text(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Trim surrounding whitespace as Telegram does, keeping entity offsets consistent."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    total = utf16_len(stripped)
    kept: list[dict[str, Any]] = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, total)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


def command_entities(text: str) -> list[dict[str, Any]]:
    """bot_command entities Telegram attaches to a user's text (``/start``, ``/help@bot``)."""
    return [
        {
            "type": "bot_command",
            "offset": utf16_len(text[: match.start()]),
            "length": utf16_len(match.group()),
        }
        for match in _COMMAND_RE.finditer(text)
    ]


def leading_command(text: str) -> tuple[str, str | None] | None:
    """(command, @mention or None) when the text starts with a bot command."""
    match = _COMMAND_RE.match(text)
    if match is None:
        return None
    mention = match.group(2)
    return match.group(1), mention[1:] if mention else None
