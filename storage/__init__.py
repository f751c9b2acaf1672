"""The database: Tortoise models, initialisation with migrations, and the queries other layers use.

Nothing here knows about aiogram or Telegram beyond storing ids.
"""
