"""Duban (督办): a Telegram bot that keeps a government implementation plan moving."""
