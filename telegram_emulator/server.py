"""The HTTP side: an aiohttp server speaking the Bot API, with limits, faults and recording."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, Self, TypeVar

from aiohttp import web

from telegram_emulator.actors import ChatRef, UserActions
from telegram_emulator.api import BotApi
from telegram_emulator.errors import (
    NOT_FOUND,
    UNAUTHORIZED,
    ApiError,
    bad_request,
    too_many_requests,
)
from telegram_emulator.limits import (
    Chaos,
    Fault,
    FaultRecord,
    FloodLimiter,
    FloodLimits,
    Violation,
)
from telegram_emulator.params import Params, Upload
from telegram_emulator.state import (
    ApiCall,
    BotMessage,
    CallbackQueryRecord,
    EmulatedChat,
    EmulatedUser,
)
from telegram_emulator.world import World

T = TypeVar("T")

MAX_UPLOAD = 50 * 1024 * 1024  # Telegram's limit for files bots upload
# Calls a fault with method=None ("*") or chaos never hits: polling and start-up plumbing, so
# random faults land on the bot's own sending logic instead of aiogram's polling backoff.
_EXEMPT = frozenset(
    {"getupdates", "getme", "setwebhook", "deletewebhook", "getwebhookinfo", "logout", "close"}
)
_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_TOKEN_RE = re.compile(r"(\d+):[\w-]+")


def _json(body: dict[str, Any], status: int) -> web.Response:
    return web.json_response(body, status=status)


class TelegramEmulator(UserActions):
    """A fake Telegram Bot API server on 127.0.0.1 for end-to-end tests and ``duban demo``.

    Usage::

        async with TelegramEmulator(token="123456:TEST", bot_username="duban_bot") as tg:
            api = TelegramAPIServer.from_base(tg.base_url)
            bot = Bot(tg.token, session=AiohttpSession(api=api))
            alice = tg.add_user("Alice", language_code="zh")
            tg.send_text(alice, None, "/start")
            reply = await tg.wait_for_message(chat_id=alice.id)
    """

    def __init__(
        self,
        token: str = "123456:TEST",
        *,
        bot_username: str = "duban_bot",
        bot_first_name: str = "Duban",
        host: str = "127.0.0.1",
        port: int = 0,
        privacy_mode: bool = True,
        can_join_groups: bool = True,
        flood_limits: FloodLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        timeout_hang: float = 0.0,
    ) -> None:
        """``clock`` drives flood limits and call times (inject a fake one for exact tests);
        ``timeout_hang`` is how long a "timeout" fault holds a request before dropping it."""
        super().__init__()
        match = _TOKEN_RE.fullmatch(token)
        if match is None:
            raise ValueError("token must look like '123456:ABC…'")
        self.token = token
        self.host = host
        self.port = port
        self.timeout_hang = timeout_hang
        self.clock = clock  # public: a test may swap in a fake clock at any time
        bot = EmulatedUser(int(match.group(1)), bot_first_name, bot_username, is_bot=True)
        self.world = World(bot, privacy_mode=privacy_mode)
        self.world.update_listeners.append(lambda: self._wake_polls("update"))
        self.api = BotApi(self.world, gate=self._gate)
        self.api.can_join_groups = can_join_groups
        self.api.methods["getupdates"] = self._get_updates
        self.calls: list[ApiCall] = []
        self.violations: list[Violation] = []
        self.faults: list[FaultRecord] = []
        self._planned: list[Fault] = []
        self._latency: dict[str, tuple[float, int | None]] = {}  # method -> (seconds, calls left)
        self._chaos: Chaos | None = None
        self._limiter: FloodLimiter | None = None
        self.flood_limits = flood_limits
        self._polls: set[asyncio.Future[str]] = set()
        self._closing = asyncio.Event()
        self._consumed_messages: set[int] = set()
        self._consumed_calls: set[int] = set()
        self._runner: web.AppRunner | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``host:port`` (port 0 = any free port)."""
        self._closing.clear()  # allow stop() then start() again
        app = web.Application(client_max_size=MAX_UPLOAD + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        # handler_cancellation: a client that gives up (timeout, stop_polling) ends its handler.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the ephemeral port actually bound

    async def stop(self) -> None:
        """Release pending long polls and hung requests, then close the server."""
        self._closing.set()
        self._wake_polls("closing")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """For ``TelegramAPIServer.from_base(tg.base_url)``."""
        return f"http://{self.host}:{self.port}"

    @property
    def bot(self) -> EmulatedUser:
        """The bot's own account."""
        return self.world.bot

    # -- HTTP -----------------------------------------------------------------------------------

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        return _json(NOT_FOUND.to_json(), 404)

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _json(UNAUTHORIZED.to_json(), 401)
        stored = self.world.files.by_path(request.match_info["path"])
        if stored is None:
            return _json(NOT_FOUND.to_json(), 404)
        return web.Response(
            body=stored.content, content_type=stored.mime_type or "application/octet-stream"
        )

    async def _read_params(self, request: web.Request) -> Params:
        raw: dict[str, Any] = dict(request.query)
        uploads: dict[str, Upload] = {}
        if request.method != "POST" or not request.body_exists:
            return Params(raw, uploads)
        try:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise bad_request("can't parse JSON encoded request parameters") from None
                if not isinstance(body, dict):
                    raise bad_request("request parameters must be a JSON object")
                raw.update(body)
            elif request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        uploads[key] = Upload(value.filename, value.content_type, value.file.read())
                    else:
                        raw[key] = value
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "Request Entity Too Large") from None
        return Params(raw, uploads)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _json(UNAUTHORIZED.to_json(), 401)
        method = request.match_info["method"]
        try:
            params = await self._read_params(request)
        except ApiError as error:
            return _json(error.to_json(), error.status)
        call = ApiCall(method, params.recorded(), self.clock(), seq=self.world.next_seq())
        self.calls.append(call)
        try:
            return await self._answer(request, call, params)
        finally:
            call.done_seq = self.world.next_seq()
            self.world.notify()

    async def _answer(self, request: web.Request, call: ApiCall, params: Params) -> web.Response:
        handler = self.api.resolve(call.method)
        fault = self._fault_for(call.method) if handler is not None else None
        if fault is not None and not fault.deliver:
            return await self._inject(request, call, fault, delivered=False)
        await self._delay(call.method)
        try:
            if handler is None:
                raise NOT_FOUND
            result = await handler(params)
        except ApiError as error:
            call.status, call.response = error.status, error.to_json()
            return _json(call.response, call.status)
        if fault is not None:
            return await self._inject(request, call, fault, delivered=True)
        call.status, call.response = 200, {"ok": True, "result": result}
        return _json(call.response, 200)

    # -- faults ---------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int = 500,
        description: str | None = None,
        retry_after: int | None = None,
        count: int = 1,
        *,
        deliver: bool = False,
    ) -> None:
        """The next ``count`` calls of ``method`` ("*" = any but polling) fail with ``status``.

        429 gets Telegram's "Too Many Requests: retry after N" and ``parameters.retry_after``.
        ``deliver=True`` performs the call first (the message is sent) and then fails it.
        """
        if status == 429:
            retry_after = retry_after or 1
            description = description or f"Too Many Requests: retry after {retry_after}"
        description = description or _DEFAULT_DESCRIPTIONS.get(status, "Internal Server Error")
        self._planned.append(
            Fault(
                None if method == "*" else method,
                "http",
                status,
                description,
                retry_after,
                count,
                deliver=deliver,
            )
        )

    def timeout_next(
        self, method: str, count: int = 1, *, hang: float | None = None, deliver: bool = False
    ) -> None:
        """The next ``count`` calls hang ``hang`` seconds (default ``timeout_hang``), then the
        connection is dropped without a response: aiogram raises TelegramNetworkError."""
        self._planned.append(
            Fault(
                None if method == "*" else method,
                "timeout",
                count=count,
                hang=self.timeout_hang if hang is None else hang,
                deliver=deliver,
            )
        )

    def slow(self, method: str, seconds: float, count: int | None = None) -> None:
        """Answer calls of ``method`` only after ``seconds`` (the next ``count`` calls, or all
        of them; 0 s = at once again): the Bot API under load, so that the bot's handlers are
        still in flight when a test stops it. A client that hangs up first gets nothing done."""
        if seconds <= 0:
            self._latency.pop(method.lower(), None)
        else:
            self._latency[method.lower()] = (seconds, count)

    async def _delay(self, method: str) -> None:
        name = method.lower()
        latency = self._latency.get(name)
        if latency is None:
            return
        seconds, left = latency
        if left is not None:
            if left > 1:
                self._latency[name] = (seconds, left - 1)
            else:
                del self._latency[name]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closing.wait()

    def chaos(
        self,
        rate: float = 0.2,
        kinds: Iterable[str] = ("429", "5xx", "timeout"),
        seed: int | None = None,
        *,
        methods: Iterable[str] | None = None,
        retry_after: int = 1,
    ) -> None:
        """Fail each eligible call with probability ``rate``; same seed, same failures.

        ``methods=None`` targets every method except polling/start-up plumbing; ``rate=0`` ends
        chaos. Kinds: "429", "5xx" (500/502), "timeout" (hang ``timeout_hang``, then drop),
        "drop" (close the connection at once).
        """
        if rate <= 0:
            self._chaos = None
            return
        self._chaos = Chaos(
            rate,
            tuple(kinds),
            seed,
            None if methods is None else frozenset(m.lower() for m in methods),
            retry_after,
            self.timeout_hang,
        )

    def _fault_for(self, method: str) -> Fault | None:
        name = method.lower()
        for fault in self._planned:
            if (fault.method is None and name not in _EXEMPT) or (
                fault.method is not None and fault.method.lower() == name
            ):
                fault.count -= 1
                if fault.count <= 0:
                    self._planned.remove(fault)
                return fault
        if self._chaos is not None:
            return self._chaos.draw(method, _EXEMPT)
        return None

    async def _inject(
        self, request: web.Request, call: ApiCall, fault: Fault, *, delivered: bool
    ) -> web.Response:
        self.faults.append(
            FaultRecord(
                self.clock(),
                call.method,
                fault.kind,
                fault.status if fault.kind == "http" else None,
                delivered,
            )
        )
        if fault.kind == "http":
            error = ApiError(
                fault.status,
                fault.description,
                {"retry_after": fault.retry_after} if fault.retry_after else None,
            )
            call.status, call.response = error.status, error.to_json()
            return _json(call.response, call.status)
        if fault.kind == "timeout" and fault.hang > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(fault.hang):
                    await self._closing.wait()
        # No response at all: the client sees a dropped connection (or its own timeout).
        call.status, call.response = 0, None
        if request.transport is not None:
            request.transport.close()
        raise web.HTTPServiceUnavailable  # never reaches the client: the transport is closed

    # -- flood limits ---------------------------------------------------------------------------

    @property
    def flood_limits(self) -> FloodLimits | None:
        """Current limits; None = unlimited. Assigning resets the counters' windows."""
        return self._limiter.limits if self._limiter is not None else None

    @flood_limits.setter
    def flood_limits(self, limits: FloodLimits | None) -> None:

        def clock() -> float:
            # Read through self, so replacing tg.clock later also moves the limiter.
            return self.clock()

        self._limiter = FloodLimiter(limits, clock) if limits is not None else None

    @property
    def limit_violations(self) -> int:
        """Calls that exceeded a flood limit (rejected, or let through when not enforced)."""
        return len(self.violations)

    def _gate(self, method: str, chat: EmulatedChat) -> None:
        if self._limiter is None:
            return
        violation = self._limiter.check(method, chat.id, chat.is_group)
        if violation is None:
            return
        self.violations.append(violation)
        if self._limiter.limits.enforce:
            raise too_many_requests(violation.retry_after)

    # -- long polling ---------------------------------------------------------------------------

    def _wake_polls(self, reason: str) -> None:
        for waiter in self._polls:
            if not waiter.done():
                waiter.set_result(reason)

    @property
    def polling(self) -> int:
        """Long polls currently waiting for an update."""
        return len(self._polls)

    async def _get_updates(self, p: Params) -> list[dict[str, Any]]:
        world = self.world
        if world.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = p.integer("offset") or 0
        limit = min(max(p.integer("limit") or 100, 1), 100)
        timeout = max(p.integer("timeout") or 0, 0)
        allowed = p.obj("allowed_updates", what="allowed updates")
        if allowed is not None:
            if not isinstance(allowed, list):
                raise bad_request("can't parse allowed updates JSON object")
            world.allowed_updates = frozenset(str(kind) for kind in allowed)
        # Only one poller per token: a newer getUpdates ends the older one with 409.
        self._wake_polls("conflict")
        world.confirm(offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            updates = world.take(limit)
            remaining = deadline - loop.time()
            if updates or remaining <= 0 or self._closing.is_set():
                return updates
            waiter: asyncio.Future[str] = loop.create_future()
            self._polls.add(waiter)
            world.notify()  # wait_polling() watches for this
            try:
                async with asyncio.timeout(remaining):
                    reason = await waiter
            except TimeoutError:
                return world.take(limit)
            finally:
                self._polls.discard(waiter)
            if reason == "conflict":
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )

    # -- recordings -----------------------------------------------------------------------------

    @property
    def sent(self) -> list[BotMessage]:
        """Every message the bot sent successfully, in order (current state)."""
        return self.world.sent

    @property
    def callback_answers(self) -> list[dict[str, Any]]:
        """answerCallbackQuery calls that succeeded, in order."""
        return self.world.callback_answers

    @property
    def callback_queries(self) -> dict[str, CallbackQueryRecord]:
        """Every button press by query id, with whether it was answered."""
        return self.world.callback_queries

    @property
    def commands(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """Command menus by (scope, language_code): ("default", ""), ("all_private_chats",
        "zh"), ("chat:-100123", "") …"""
        return self.world.commands

    @property
    def updates(self) -> list[dict[str, Any]]:
        """Every update ever queued, in order."""
        return self.world.updates

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates the bot has not confirmed yet."""
        return self.world.pending

    @property
    def deliveries(self) -> dict[int, int]:
        """update_id -> how many times getUpdates returned it."""
        return self.world.deliveries

    @property
    def users(self) -> dict[int, EmulatedUser]:
        """People by id."""
        return self.world.users

    @property
    def chats(self) -> dict[int, EmulatedChat]:
        """Chats by id."""
        return self.world.chats

    def calls_to(self, method: str) -> list[ApiCall]:
        """Calls of one method (case-insensitive), in order."""
        return [call for call in self.calls if call.method.lower() == method.lower()]

    def messages_to(self, chat: ChatRef, *, include_deleted: bool = False) -> list[BotMessage]:
        """The bot's messages in one chat, current state, in order."""
        chat_id = chat if isinstance(chat, int) else self.chat_of(chat).id
        return [
            m
            for m in self.world.sent
            if m.chat_id == chat_id and (include_deleted or not m.deleted)
        ]

    # -- waiting --------------------------------------------------------------------------------
    # ASYNC109 is silenced below on purpose: these helpers are the test-facing API, and an explicit
    # ``timeout=`` argument reads better in a test than wrapping every call in asyncio.timeout().

    async def _wait_until(
        self,
        check: Callable[[], T | None],
        timeout: float,  # noqa: ASYNC109
        explain: Callable[[], str],
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result is not None:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(explain())
            await self.world.changed(remaining)

    def _failures(self) -> str:
        failed = [f"{c.method} -> {c.status} {c.description}" for c in self.calls if not c.ok]
        return "; ".join(failed[-5:]) or "none"

    async def wait_for_message(
        self,
        chat_id: ChatRef | None = None,
        predicate: Callable[[BotMessage], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> BotMessage:
        """The bot's next message (to ``chat_id``, matching ``predicate``) not returned before.

        Each message is handed out once, so successive calls walk through the conversation.
        """
        target = None
        if chat_id is not None:
            target = chat_id if isinstance(chat_id, int) else self.chat_of(chat_id).id

        def check() -> BotMessage | None:
            for index, record in enumerate(self.world.sent):
                if index in self._consumed_messages:
                    continue
                if target is not None and record.chat_id != target:
                    continue
                if predicate is not None and not predicate(record):
                    continue
                self._consumed_messages.add(index)
                return record
            return None

        def explain() -> str:
            texts = [m.text for m in self.world.sent if target is None or m.chat_id == target]
            return (
                f"no new bot message to {target} within {timeout}s; "
                f"sent there: {texts[-5:]}; recent failed calls: {self._failures()}"
            )

        return await self._wait_until(check, timeout, explain)

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[ApiCall], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> ApiCall:
        """The next answered call of ``method`` not returned before."""

        def check() -> ApiCall | None:
            for index, call in enumerate(self.calls):
                if index in self._consumed_calls or call.done_seq is None:
                    continue
                if call.method.lower() != method.lower():
                    continue
                if predicate is not None and not predicate(call):
                    continue
                self._consumed_calls.add(index)
                return call
            return None

        return await self._wait_until(check, timeout, lambda: f"no {method} call within {timeout}s")

    async def wait_for_answer(
        self,
        query_id: str,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """The answerCallbackQuery for one press."""
        record = self.world.callback_queries[query_id]
        return await self._wait_until(
            lambda: record.answer,
            timeout,
            lambda: f"callback query {query_id} not answered; failed calls: {self._failures()}",
        )

    async def wait_polling(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Until a getUpdates long poll is waiting for updates."""
        await self._wait_until(
            lambda: True if self._polls else None, timeout, lambda: "the bot is not polling"
        )

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
        interval: float = 0.01,
    ) -> None:
        """Until ``predicate()`` holds, e.g. a handler's side effect in the database.

        Checked on every emulator event and every ``interval`` seconds, since handler side
        effects do not pass through the emulator.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s")
            await self.world.changed(min(interval, remaining))

    async def wait_idle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Until every update is confirmed and the bot is back in a long poll."""
        await self._wait_until(
            lambda: True if self._polls and not self.world.pending else None,
            timeout,
            lambda: f"{len(self.world.pending)} updates unconfirmed, polling={self.polling}",
        )
