"""App assembly: the Bot, the dispatcher, the command menus, and polling or webhook.

Read straight through: settings -> logging -> Bot -> build_dispatcher -> polling or webhook.
Nothing here is a module-level singleton; tests build a fresh dispatcher each time.

The Redis client and the aiohttp web server are imported only when REDIS_URL or WEBHOOK_URL asks
for them: a polling bot with its state in memory should not load them at every start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
from collections.abc import Iterable
from contextlib import suppress
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramUnauthorizedError,
)
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage, DefaultKeyBuilder
from aiogram.fsm.storage.memory import MemoryStorage, SimpleEventIsolation
from aiogram.types import (
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
)
from aiogram.utils.i18n import I18n

from bot.commands import COORDINATION_MENU, command_menu
from bot.i18n import build_i18n
from bot.onboarding import coordination_chat_id, remember_bot_username
from bot.people import Access
from bot.polling import Poller
from bot.redaction import redact, register_secret
from bot.scheduled_messages import make_renderer
from bot.settings import SUPPORTED_LOCALES, Settings
from handlers import build_routers
from handlers.middlewares import ActorI18nMiddleware, ActorMiddleware
from jobs import setup_scheduling
from storage.db import close_db, init_db
from storage.lease import RunLease, acquire_run_lease
from storage.onboarding import granted_coordinator_ids

if TYPE_CHECKING:
    from aiogram.fsm.storage.redis import RedisStorage

log = logging.getLogger(__name__)


class MissingTokenError(Exception):
    """`duban run` without BOT_TOKEN."""


def build_bot(settings: Settings) -> Bot:
    if settings.bot_token is None:
        raise MissingTokenError(
            "BOT_TOKEN is not set: talk to @BotFather in Telegram (/newbot), then put the token "
            "in .env as BOT_TOKEN=… (see .env.example)"
        )
    token = settings.bot_token.get_secret_value()
    register_secret(token)  # from here on, no error text carries it (bot.redaction)
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    return Bot(
        token=token,
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )


def build_dispatcher(
    settings: Settings, *, i18n: I18n | None = None, storage: BaseStorage | None = None
) -> Dispatcher:
    """A dispatcher with every router and middleware; dependencies travel as workflow data."""
    i18n = i18n or build_i18n(settings.default_locale)
    storage = storage or build_fsm_storage(settings)
    dispatcher = Dispatcher(
        storage=storage,
        events_isolation=_events_isolation(storage),
        settings=settings,
        i18n=i18n,
    )
    dispatcher.update.outer_middleware(ActorMiddleware(settings.admin_ids))
    ActorI18nMiddleware(i18n).setup(dispatcher)
    dispatcher.include_routers(*build_routers())
    return dispatcher


FSM_KEY_PREFIX = "duban"  # Redis keys: duban:BOT_ID:CHAT_ID:USER_ID:state|data|lock


def build_fsm_storage(settings: Settings) -> BaseStorage:
    """Conversation state: in Redis when REDIS_URL is set (it survives a restart), else in memory.

    The dispatcher closes it on shutdown (aiogram registers `fsm.close` as a shutdown hook).
    Connecting is lazy: `duban run` pings Redis at start and stops with one line if it is down.
    """
    if settings.redis_url:
        from aiogram.fsm.storage.redis import RedisStorage  # noqa: PLC0415 - only with Redis

        return RedisStorage.from_url(
            settings.redis_url, key_builder=DefaultKeyBuilder(prefix=FSM_KEY_PREFIX)
        )
    return MemoryStorage()


def _events_isolation(storage: BaseStorage) -> BaseEventIsolation:
    """One user's updates are handled one at a time (an album's photos must not race on the
    draft): a Redis lock beside Redis storage, so it holds across processes, and expires within
    seconds when its process dies (bot/isolation.py); else in memory."""
    redis = _redis_storage(storage)
    if redis is not None:
        from bot.isolation import RenewedRedisEventIsolation  # noqa: PLC0415 - only with Redis

        return RenewedRedisEventIsolation(redis.redis, redis.key_builder)
    return SimpleEventIsolation()


def _redis_storage(storage: BaseStorage) -> RedisStorage | None:
    """`storage` as a RedisStorage, or None; without importing the Redis client for a storage
    that cannot be one (a RedisStorage exists only once its module has been imported)."""
    module = sys.modules.get("aiogram.fsm.storage.redis")
    if module is not None and isinstance(storage, module.RedisStorage):
        return storage
    return None


async def set_command_menus(
    bot: Bot, i18n: I18n, settings: Settings, granted: Iterable[int] = ()
) -> None:
    """Localized menus per language and scope: private chats, groups, and each coordinator
    (ADMIN_IDS and the `granted` ones)."""
    coordinators = dict.fromkeys([*settings.admin_ids, *granted])
    group = await coordination_chat_id(settings)
    scopes = [
        (BotCommandScopeAllPrivateChats(), Access.LIAISON, False),
        (BotCommandScopeAllGroupChats(), Access.LIAISON, True),
        *(
            (BotCommandScopeChat(chat_id=coordinator), Access.COORDINATOR, False)
            for coordinator in coordinators
        ),
    ]
    if group is not None:
        # Its members see lookups and the summary, which other groups refuse (COORDINATION_MENU).
        scopes.append((BotCommandScopeChat(chat_id=group), COORDINATION_MENU, True))
    for scope, access, in_group in scopes:
        coordination_group = scope.type == "chat" and in_group
        for language in (None, *SUPPORTED_LOCALES):
            with i18n.context(), i18n.use_locale(language or settings.default_locale):
                menu = command_menu(
                    access, in_group=in_group, coordination_group=coordination_group
                )
            try:
                await bot.set_my_commands(menu, scope=scope, language_code=language)
            except TelegramBadRequest as exc:
                # A coordinator who never opened the bot: Telegram knows no chat with them yet.
                log.warning("No command menu for %s: %s", scope.model_dump(), exc.message)
                break


async def on_startup(bot: Bot, dispatcher: Dispatcher, settings: Settings, i18n: I18n) -> None:
    me = await bot.get_me()
    dispatcher["bot_username"] = me.username
    # Stored for the CLI (`duban invite` prints deep links but cannot ask Telegram).
    await remember_bot_username(me.username)
    await set_command_menus(bot, i18n, settings, granted=await granted_coordinator_ids())
    log.info("Duban is up as @%s", me.username)


def create_app(settings: Settings) -> tuple[Bot, Dispatcher]:
    """The bot and its dispatcher, as `duban run` uses them (end-to-end tests use this too)."""
    bot = build_bot(settings)
    dispatcher = build_dispatcher(settings)
    dispatcher.startup.register(on_startup)
    # The sender always runs: notifications (bot.notices) go through it; SCHEDULING=false only
    # turns off the planned sends (prompts, reminders, nudges, escalations, summaries).
    render = make_renderer(settings, dispatcher["i18n"])
    setup_scheduling(dispatcher, bot, settings, render=render, plan=settings.scheduling)
    return bot, dispatcher


class TelegramUnreachableError(Exception):
    """The Bot API cannot be reached, or refuses the token, at start-up."""


async def run(settings: Settings) -> None:
    """`duban run`: the run lease, database, bot, dispatcher; then long polling, or a webhook
    server.

    The run lease (storage.lease) comes first and is held until the process ends: a second
    `duban run` on the same database stops here with LeaseHeldError, before it touches anything.
    """
    lease = await acquire_run_lease(settings.database_url)
    try:
        await _run_leased(settings, lease)
    finally:
        if lease is not None:
            await lease.release()


async def _run_leased(settings: Settings, lease: RunLease | None) -> None:
    if lease is not None:
        lease.on_lost(_stop_on_lost_lease)
    bot, dispatcher = create_app(settings)
    dispatcher["run_lease"] = lease  # start-up takes back the ledger claims of dead processes
    await init_db(settings.database_url)
    try:
        await _check_redis(dispatcher)
        await _check_telegram(bot, settings)
        if settings.webhook_url:
            await _run_webhook(bot, dispatcher, settings)
        else:
            await bot.delete_webhook(drop_pending_updates=False)
            await _run_polling(bot, dispatcher, settings)
    finally:
        await bot.session.close()
        await close_db()


def _stop_on_lost_lease() -> None:
    """Without its lease another `duban run` could start on the database: stop as on SIGTERM
    (polling and the webhook server both stop on it, letting in-flight work finish)."""
    log.error("The run lease on the database was lost (the connection holding it ended); stopping")
    os.kill(os.getpid(), signal.SIGTERM)


class RedisUnreachableError(TelegramUnreachableError):
    """REDIS_URL is set but Redis does not answer at start-up (`duban run` prints one line)."""


async def _check_redis(dispatcher: Dispatcher) -> None:
    storage = _redis_storage(dispatcher.fsm.storage)
    if storage is None:
        return
    from redis.exceptions import RedisError  # noqa: PLC0415 - only with Redis

    try:
        await storage.redis.ping()
    except (OSError, RedisError) as exc:
        await storage.close()
        raise RedisUnreachableError(
            f"REDIS_URL is set but Redis does not answer ({type(exc).__name__}: {exc})"
        ) from None


async def _check_telegram(bot: Bot, settings: Settings) -> None:
    """Fail at start with one clear line, not a traceback, when Telegram is out of reach."""
    try:
        await bot.get_me()
    except TelegramUnauthorizedError:
        raise TelegramUnreachableError(
            f"the Bot API at {settings.telegram_api_url} refused BOT_TOKEN (revoked or mistyped?)"
        ) from None
    except TelegramNetworkError as exc:
        raise TelegramUnreachableError(
            f"cannot reach the Bot API at {settings.telegram_api_url}: {redact(exc.message)}"
        ) from None


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with suppress(NotImplementedError):
            loop.add_signal_handler(signum, _on_signal, signum, stop)
    return stop


def _on_signal(signum: signal.Signals, stop: asyncio.Event) -> None:
    log.info("Received %s: stopping", signum.name)
    stop.set()


async def _run_polling(bot: Bot, dispatcher: Dispatcher, settings: Settings) -> None:
    """Long polling that confirms only handled updates (bot/polling.py), between the
    dispatcher's start-up and shut-down hooks (scheduler, storage)."""
    stop = _stop_on_signals()
    data = {"dispatcher": dispatcher, "bots": (bot,), **dispatcher.workflow_data}
    await dispatcher.emit_startup(bot=bot, **data)
    try:
        poller = Poller(
            dispatcher,
            bot,
            grace=settings.shutdown_grace_seconds,
            allowed_updates=dispatcher.resolve_used_update_types(),
        )
        log.info("Polling for updates")
        await poller.run(stop, bots=(bot,))
    finally:
        await dispatcher.emit_shutdown(bot=bot, **data)


async def _run_webhook(bot: Bot, dispatcher: Dispatcher, settings: Settings) -> None:
    # The web server is loaded only for a webhook (module docstring).
    from aiogram.webhook.aiohttp_server import setup_application  # noqa: PLC0415
    from aiohttp import web  # noqa: PLC0415

    from bot.webhook import WebhookHandler  # noqa: PLC0415

    secret = (
        settings.webhook_secret.get_secret_value()
        if settings.webhook_secret
        else secrets.token_urlsafe(32)
    )
    path = urlsplit(settings.webhook_url).path or "/"
    app = web.Application()
    # 401 when X-Telegram-Bot-Api-Secret-Token is wrong or missing; 200 once handled.
    webhook = WebhookHandler(dispatcher, bot, secret)
    app.router.add_post(path, webhook)
    setup_application(app, dispatcher, bot=bot)
    await bot.set_webhook(settings.webhook_url, secret_token=secret)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, settings.webhook_host, settings.webhook_port).start()
    log.info("Webhook server on %s:%s%s", settings.webhook_host, settings.webhook_port, path)
    stop = _stop_on_signals()
    try:
        await stop.wait()
    finally:
        # Refuse new updates, settle those in flight, then stop the server and the hooks.
        await webhook.drain(settings.shutdown_grace_seconds)
        await runner.cleanup()
        await bot.session.close()
