"""Request parameters as the Bot API reads them: JSON body, form fields or query string."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from telegram_emulator.errors import bad_request

_INT_RE = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart/form-data request."""

    filename: str | None
    content_type: str | None
    content: bytes

    def __repr__(self) -> str:
        return f"Upload({self.filename!r}, {len(self.content)} bytes)"


class Params:
    """Typed access to one request's parameters.

    Form fields always arrive as strings (aiogram JSON-encodes objects, numbers and booleans), a
    JSON body carries native values; both are accepted, as Telegram accepts both.
    """

    def __init__(self, raw: dict[str, Any], uploads: dict[str, Upload] | None = None) -> None:
        self.raw = raw
        self.uploads = uploads or {}

    def has(self, name: str) -> bool:
        """True if the parameter was sent and is not null."""
        return self.raw.get(name) is not None

    def string(self, name: str, *, empty: str | None = None) -> str | None:
        """A string parameter; ``empty`` is the 400 reason when it is required."""
        value = self.raw.get(name)
        if value is None or value == "":
            if empty is not None:
                raise bad_request(empty)
            return None if value is None else ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        if not isinstance(value, str):
            raise bad_request(f'field "{name}" must be of type String')
        return value

    def integer(self, name: str, *, empty: str | None = None) -> int | None:
        """An integer parameter."""
        value = self.raw.get(name)
        if value is None or value == "":
            if empty is not None:
                raise bad_request(empty)
            return None
        if isinstance(value, bool):
            raise bad_request(f"invalid {name} specified")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
            return int(value)
        raise bad_request(f"invalid {name} specified")

    def flag(self, name: str) -> bool:
        """A boolean parameter; absent means False."""
        value = self.raw.get(name)
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1")
        return False

    def obj(self, name: str, *, what: str | None = None) -> Any:
        """A JSON-serialized object or array parameter (or the native value from a JSON body)."""
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {what or name} JSON object") from None
        return value

    def file(self, name: str) -> Upload | str | None:
        """An InputFile: an uploaded part (directly or via ``attach://``) or a file_id/URL."""
        if name in self.uploads:
            return self.uploads[name]
        value = self.raw.get(name)
        if isinstance(value, str) and value.startswith("attach://"):
            upload = self.uploads.get(value.removeprefix("attach://"))
            if upload is None:
                raise bad_request("wrong file identifier/HTTP URL specified")
            return upload
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise bad_request("wrong file identifier/HTTP URL specified")
        return value

    def recorded(self) -> dict[str, Any]:
        """What the bot sent, for the call log: form values plus the uploads."""
        return {**self.raw, **self.uploads}
