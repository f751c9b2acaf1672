"""Keep the bot token out of every text an error becomes: log lines, the ledger, summaries, the CLI.

The Bot API puts the token in the URL path (`https://api.telegram.org/bot<TOKEN>/getMe`), and
aiohttp and aiogram quote that URL in their exception texts. `redact(text)` replaces

- the configured token (`register_secret`, called where the token is unwrapped), URL-encoded
  forms of it, and its secret part (after the colon) on its own, wherever they appear;
- anything shaped like a Bot API token in a URL path (`/bot<digits>:<secret>`), and anything
  shaped like a real token (`<digits>:<35 characters>`) anywhere, so a token from another source
  is caught too.

`RedactingFilter` applies it to log records (the formatted message and the traceback) and goes on
every handler (`install_log_redaction`): a filter on a logger would not see records that
propagate to it from other loggers.

Pure: no aiogram, no I/O. Patterns are compiled once; `redact` is a few regex scans.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from types import TracebackType
from urllib.parse import quote

REDACTED = "<redacted>"
# The path aiogram builds: {base}/bot{token}/{method}; the colon may arrive as %3A. The secret is
# taken greedily up to the next character a token cannot hold, and may be empty (a token cut off
# at the colon, its secret elsewhere in the text).
_TOKEN_IN_PATH = re.compile(r"(?i)(/bot)\d+(?::|%3A)[A-Za-z0-9_-]*")
# A real token anywhere: the bot id, a colon, 35 URL-safe characters (BotFather's format).
_TOKEN_SHAPE = re.compile(
    r"(?i)(?<![A-Za-z0-9_-])\d{5,}(?::|%3A)[A-Za-z0-9_-]{30,}(?![A-Za-z0-9_-])"
)
# A secret part shorter than this is not redacted on its own (it would hit ordinary words).
_MIN_SECRET_PART = 8

_secrets: set[str] = set()
_known: re.Pattern[str] | None = None


def register_secret(token: str | None) -> None:
    """Redact `token` (and its URL-encoded forms and secret part) from now on, in this process."""
    global _known  # noqa: PLW0603 - one registry per process, like the logging configuration
    if not token:
        return
    forms = {token, quote(token, safe=""), quote(token, safe=":")}
    _, _, secret = token.partition(":")
    if len(secret) >= _MIN_SECRET_PART:
        forms.update({secret, quote(secret, safe="")})
    if forms <= _secrets:
        return
    _secrets.update(forms)
    # Longest first, so the whole token wins over its secret part.
    alternatives = sorted(_secrets, key=len, reverse=True)
    _known = re.compile("|".join(re.escape(form) for form in alternatives), re.IGNORECASE)


def forget_secrets() -> None:
    """Forget every registered token (tests)."""
    global _known  # noqa: PLW0603
    _secrets.clear()
    _known = None


def redact(text: str) -> str:
    """`text` without the configured token or anything shaped like a Bot API token."""
    if _known is not None:
        text = _known.sub(REDACTED, text)
    text = _TOKEN_IN_PATH.sub(r"\1" + REDACTED, text)
    return _TOKEN_SHAPE.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """Redacts a record's formatted message and its traceback before any handler formats it.

    The message is formatted here (msg % args) and stored without args; the traceback is
    formatted into `exc_text`, which `logging.Formatter` prints instead of formatting exc_info
    again. Idempotent, so a record passing several handlers is redacted once per handler at most.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_log_redaction() -> None:
    """Put a `RedactingFilter` on every handler logging knows of: the root logger's, every other
    logger's, and the last-resort handler (used when logging was never configured)."""
    handlers: list[logging.Handler] = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers.extend(logger.handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(RedactingFilter())


def install_excepthook() -> None:
    """Print an uncaught exception's traceback redacted (Python's default hook prints it raw)."""
    if getattr(sys.excepthook, "redacting", False):
        return

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.write(redact(text))

    hook.redacting = True  # type: ignore[attr-defined]
    sys.excepthook = hook
