"""A misbehaving HTTP proxy on 127.0.0.1 in front of the Telegram emulator (tests/test_secrets.py).

It reads each request itself (one request per connection: it answers with `Connection: close`)
and either forwards it to the emulator or answers it badly: a redirect loop or a redirect to an
invalid URL (both with a token in the path), a reset connection, bad JSON, a truncated body, a
malformed status line. aiohttp and aiogram turn most of these into exception texts that quote the
request URL, which holds the bot token.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

FAULTS = (
    "redirect_loop",
    "redirect_invalid",
    "redirect_foreign",
    "reset",
    "bad_json",
    "truncated",
    "bad_status",
)
_CHAT_ID = re.compile(rb'chat_id(?:=|"\r\n\r\n)(-?\d+)')


@dataclass(frozen=True)
class Request:
    method: str  # the Bot API method, e.g. sendMessage ("" for a redirect hop)
    path: str
    chat_id: int | None


@dataclass
class FaultyProxy:
    """`decide(request)` returns a name from FAULTS, or None to forward the request."""

    upstream_port: int
    token: str
    foreign_token: str
    decide: Callable[[Request], str | None]
    faults: Counter[str] = field(default_factory=Counter)
    forwarded: Counter[str] = field(default_factory=Counter)
    _server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> FaultyProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), timeout=5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head, body = await _read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            writer.close()
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        path = request_line.split(" ")[1] if " " in request_line else "/"
        parts = path.split("?", 1)[0].strip("/").split("/")
        method = parts[1] if len(parts) == 2 and parts[0].startswith("bot") else ""
        match = _CHAT_ID.search(body)
        request = Request(method, path, int(match.group(1)) if match else None)
        fault = "redirect_loop" if path.startswith(f"/bot{self.token}/again") else None
        fault = fault or self.decide(request)
        try:
            if fault is None:
                self.forwarded[method] += 1
                await self._forward(head, body, writer)
            else:
                self.faults[fault] += 1
                await self._misbehave(fault, writer)
        except ConnectionError:
            pass  # the client gave up (it times out, or polling stops)
        finally:
            if not writer.is_closing():
                writer.close()

    async def _forward(self, head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        lines = [
            line
            for line in head.split(b"\r\n")
            if line and not line.lower().startswith((b"connection:", b"keep-alive:"))
        ]
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.upstream_port
        )
        try:
            upstream_writer.write(b"\r\n".join([*lines, b"Connection: close", b"", b""]) + body)
            await upstream_writer.drain()
            response = await upstream_reader.read()  # until the emulator closes
        finally:
            upstream_writer.close()
        writer.write(response)
        await writer.drain()

    async def _misbehave(self, fault: str, writer: asyncio.StreamWriter) -> None:
        if fault == "reset":
            sock = writer.get_extra_info("socket")
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        if fault.startswith("redirect"):
            location = {
                "redirect_loop": f"/bot{self.token}/again",
                "redirect_invalid": f"http://127.0.0.1:80800/bot{self.token}/getMe",
                "redirect_foreign": f"http://127.0.0.1:80800/bot{self.foreign_token}/getMe",
            }[fault]
            writer.write(
                b"HTTP/1.1 302 Found\r\nLocation: " + location.encode() + b"\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
        elif fault == "bad_json":
            body = b'{"ok": true, "result": [tru'
            writer.write(_response(b"200 OK", body))
        elif fault == "truncated":
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b'Content-Length: 400\r\nConnection: close\r\n\r\n{"ok": true, "res'
            )
        elif fault == "bad_status":
            writer.write(b"HTTP/1.1 OK-ish\r\n\x00\x01garbage\r\n\r\n")
        else:
            raise ValueError(fault)
        await writer.drain()


def _response(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            chunks.append(chunk[:-2])
        body = b"".join(chunks)
        head = head.replace(b"Transfer-Encoding: chunked", b"Content-Length: " + b"%d" % len(body))
        return head, body
    length = int(headers.get(b"content-length", b"0"))
    return head, await reader.readexactly(length)
