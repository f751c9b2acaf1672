"""Files the emulated Telegram knows: uploads by the bot and by users, addressable by file_id."""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import struct
from dataclasses import dataclass
from typing import Any

# Telegram's photo size ladder: thumbnails "s", "m", "x", "y", "w" by longest side.
_PHOTO_STEPS = (90, 320, 800, 1280, 2560)


@dataclass
class StoredFile:
    """One file: its ids, kind ("photo", "document", ...) and content."""

    file_id: str
    file_unique_id: str
    kind: str
    content: bytes
    file_name: str | None = None
    mime_type: str | None = None
    width: int = 0
    height: int = 0

    @property
    def file_path(self) -> str:
        """The path getFile hands out, like Telegram's ``documents/file_3.pdf``."""
        suffix = ""
        if self.file_name and "." in self.file_name:
            suffix = "." + self.file_name.rsplit(".", 1)[1]
        elif self.kind == "photo":
            suffix = ".jpg"
        return f"{self.kind}s/{self.file_unique_id}{suffix}"


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, JPEG, GIF, BMP or WebP image; None if it is not an image."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return 512, 512  # good enough: nobody reads WebP geometry in these tests
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (segment,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + segment
    return None


class FileStore:
    """file_id -> StoredFile, with deterministic ids so test runs are reproducible."""

    def __init__(self) -> None:
        self._files: dict[str, StoredFile] = {}
        self._by_path: dict[str, StoredFile] = {}
        self._counter = 0

    def add(
        self,
        kind: str,
        content: bytes,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        width: int = 0,
        height: int = 0,
    ) -> StoredFile:
        """Register new content and mint its ids."""
        self._counter += 1
        digest = hashlib.sha256(content).digest()
        raw = f"{kind}:{self._counter}:".encode() + digest[:12]
        file_id = "AgAC" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
        unique = base64.urlsafe_b64encode(digest[:9] + self._counter.to_bytes(3, "big"))
        stored = StoredFile(
            file_id=file_id,
            file_unique_id="AQAD" + unique.decode().rstrip("="),
            kind=kind,
            content=content,
            file_name=file_name,
            mime_type=mime_type or _guess_mime(file_name),
            width=width,
            height=height,
        )
        self._files[file_id] = stored
        self._by_path[stored.file_path] = stored
        return stored

    def get(self, file_id: str) -> StoredFile | None:
        """The file with this id, if any."""
        return self._files.get(file_id)

    def by_path(self, path: str) -> StoredFile | None:
        """The file getFile exposed under ``path``."""
        return self._by_path.get(path)

    def photo_sizes(self, stored: StoredFile) -> list[dict[str, Any]]:
        """The PhotoSize ladder Telegram returns for one uploaded photo, smallest first."""
        width, height = stored.width or 1, stored.height or 1
        longest = max(width, height)
        sizes: list[dict[str, Any]] = []
        for step in _PHOTO_STEPS:
            scale = min(1.0, step / longest)
            size = {
                "file_id": f"{stored.file_id}_{step}",
                "file_unique_id": f"{stored.file_unique_id}{step}",
                "file_size": max(1, round(len(stored.content) * scale * scale)),
                "width": max(1, round(width * scale)),
                "height": max(1, round(height * scale)),
            }
            sizes.append(size)
            if step >= longest:
                break
        # The largest size is the original upload, reachable under the stored file_id.
        sizes[-1].update(
            file_id=stored.file_id,
            file_unique_id=stored.file_unique_id,
            file_size=len(stored.content),
        )
        for size in sizes[:-1]:
            self._files[size["file_id"]] = stored
        return sizes

    def describe(self, stored: StoredFile) -> dict[str, Any]:
        """The File object getFile returns."""
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.content),
            "file_path": stored.file_path,
        }


def _guess_mime(file_name: str | None) -> str | None:
    if not file_name:
        return None
    return mimetypes.guess_type(file_name)[0] or "application/octet-stream"
