"""bot.redaction: the one function that keeps the bot token out of error texts, and the log filter
that applies it to every handler (message and traceback)."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from bot.redaction import (
    REDACTED,
    RedactingFilter,
    forget_secrets,
    install_log_redaction,
    redact,
    register_secret,
)

TOKEN = "123456:SECRETsecret-part_42"  # short, as in tests: caught by value only
SECRET = TOKEN.split(":", 1)[1]
REAL_SHAPE = "7700123456:AAE-secretSECRETsecretSECRET_x12345"  # BotFather's format


@pytest.fixture(autouse=True)
def registry() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


def test_a_token_url_of_any_bot_is_redacted_by_its_shape() -> None:
    text = "url='https://api.telegram.org/bot987654:AnyOtherSecret_x-1/getUpdates'"
    assert redact(text) == f"url='https://api.telegram.org/bot{REDACTED}/getUpdates'"
    encoded = "http://h/bot987654%3AAnyOtherSecret/getMe"
    assert redact(encoded) == f"http://h/bot{REDACTED}/getMe"
    assert REAL_SHAPE not in redact(f"token is {REAL_SHAPE}.")  # a real token, not in a URL


def test_the_configured_token_is_redacted_in_any_form() -> None:
    register_secret(TOKEN)
    for text in (
        f"BOT_TOKEN={TOKEN}",
        f"https://api.telegram.org/bot{quote(TOKEN, safe='')}/getMe",  # URL-encoded colon
        f"a secret alone: {SECRET}!",
        f"https://api.telegram.org/BOT{TOKEN.upper()}/getMe",
    ):
        redacted = redact(text)
        assert TOKEN not in redacted and SECRET not in redacted, redacted
        assert SECRET.lower() not in redacted.lower(), redacted
        assert REDACTED in redacted


def test_text_without_a_token_is_unchanged_and_redaction_is_idempotent() -> None:
    register_secret(TOKEN)
    text = "Delivery 5 failed: ClientOSError: [Errno 104] Connection reset by peer; bot id 123456"
    assert redact(text) == text
    once = redact(f"https://x/bot{TOKEN}/getMe and {SECRET}")
    assert redact(once) == once
    register_secret(None)  # no token configured: nothing to add
    register_secret("123:ab")  # a secret part too short to redact alone
    assert redact("ab cab") == "ab cab"


def _logger_with_filtered_handler() -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    parent = logging.getLogger("redaction-test")
    parent.handlers[:] = [handler]
    parent.propagate = False
    parent.setLevel(logging.DEBUG)
    return parent, stream, handler


def test_the_filter_redacts_message_arguments_and_traceback_of_propagated_records() -> None:
    register_secret(TOKEN)
    parent, stream, handler = _logger_with_filtered_handler()
    child = logging.getLogger("redaction-test.aiogram.dispatcher")  # propagates to the handler
    try:
        child.error("Failed to fetch updates - %s: %s", "TelegramNetworkError", f"/bot{TOKEN}/x")
        try:
            try:
                raise ConnectionError(f"url='http://h/bot{quote(TOKEN, safe='')}/getUpdates'")
            except ConnectionError as inner:
                raise RuntimeError(f"wrapped {SECRET}") from inner
        except RuntimeError:
            # The token split: its head at the end of the message, its secret in the traceback.
            head = TOKEN.partition(":")[0] + ":"
            child.exception("Sending failed for http://h/bot%s", head)
    finally:
        parent.handlers.remove(handler)
    output = stream.getvalue()
    assert "Traceback" in output and "ConnectionError" in output
    assert TOKEN not in output and SECRET not in output, output
    assert quote(TOKEN, safe="") not in output
    assert output.count(REDACTED) >= 4, output


def test_the_filter_keeps_a_record_readable_by_a_second_handler() -> None:
    register_secret(TOKEN)
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "send %s failed: %r", ("prompt", TOKEN), None
    )
    assert RedactingFilter().filter(record)
    assert RedactingFilter().filter(record)  # a second handler's filter
    assert record.getMessage() == f"send prompt failed: '{REDACTED}'"
    assert logging.Formatter().format(record) == record.getMessage()


def test_install_puts_the_filter_on_every_handler_once() -> None:
    root = logging.getLogger()
    extra = logging.StreamHandler(io.StringIO())
    named = logging.getLogger("redaction-test.install")
    named.addHandler(extra)
    root_handler = logging.StreamHandler(io.StringIO())
    root.addHandler(root_handler)
    try:
        install_log_redaction()
        install_log_redaction()
        for handler in (extra, root_handler, logging.lastResort):
            assert handler is not None
            filters = [f for f in handler.filters if isinstance(f, RedactingFilter)]
            assert len(filters) == 1, handler
    finally:
        named.removeHandler(extra)
        root.removeHandler(root_handler)
        assert logging.lastResort is not None
        for f in list(logging.lastResort.filters):
            logging.lastResort.removeFilter(f)


def test_an_uncaught_exception_in_the_cli_is_printed_redacted() -> None:
    """The excepthook `duban` installs: a traceback nobody caught still names no token."""
    script = (
        "from bot.redaction import install_excepthook, register_secret\n"
        "install_excepthook(); register_secret('123456:SECRETsecret-part_42')\n"
        "raise RuntimeError('http://h/bot123456:SECRETsecret-part_42/getMe')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "RuntimeError: http://h/bot<redacted>/getMe" in result.stderr, result.stderr
    assert SECRET not in result.stderr
