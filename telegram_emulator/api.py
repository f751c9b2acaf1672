"""Bot API methods with Telegram's validation, error descriptions and result JSON."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from telegram_emulator.errors import ApiError, bad_request
from telegram_emulator.files import StoredFile, image_size
from telegram_emulator.formatting import parse_html, strip_text
from telegram_emulator.params import Params, Upload
from telegram_emulator.state import ADMINISTRATOR, CREATOR, KICKED, LEFT, EmulatedChat
from telegram_emulator.world import World, member_json

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
MAX_ANSWER_TEXT = 200
MAX_COMMANDS = 100
MAX_DOWNLOAD = 20 * 1024 * 1024  # getFile refuses bigger files

_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
_QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"
_BUTTON_ACTIONS = frozenset(
    {
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    }
)
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_SCOPES = frozenset(
    {
        "default",
        "all_private_chats",
        "all_group_chats",
        "all_chat_administrators",
        "chat",
        "chat_administrators",
        "chat_member",
    }
)
_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
_LANGUAGE_RE = re.compile(r"[a-z]{2}")
_URL_RE = re.compile(r"(?i)(https?|tg)://[^\s]+$")
# setMyName/Description/ShortDescription: (stored key, parameter, maximum length).
_BOT_TEXTS = {
    "name": ("name", 64),
    "description": ("description", 512),
    "short_description": ("short_description", 120),
}

Handler = Callable[[Params], Awaitable[Any]]
Gate = Callable[[str, EmulatedChat], None]


def _without_nulls(value: Any) -> Any:
    """Drop JSON nulls the way Telegram ignores them in objects."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _reply_copy(message: dict[str, Any]) -> dict[str, Any]:
    """A replied-to message as embedded in a reply: Telegram nests only one level."""
    return {k: v for k, v in message.items() if k != "reply_to_message"}


class BotApi:
    """The methods; ``gate`` is the flood-limit check the server installs."""

    def __init__(self, world: World, gate: Gate | None = None) -> None:
        self.world = world
        self.gate: Gate = gate or (lambda method, chat: None)
        self.methods: dict[str, Handler] = {
            name.lower(): getattr(self, f"api_{name}")
            for name in (
                "getMe",
                "logOut",
                "close",
                "setWebhook",
                "deleteWebhook",
                "getWebhookInfo",
                "sendMessage",
                "sendPhoto",
                "sendDocument",
                "editMessageText",
                "editMessageCaption",
                "editMessageReplyMarkup",
                "deleteMessage",
                "deleteMessages",
                "answerCallbackQuery",
                "sendChatAction",
                "getChat",
                "getChatMember",
                "getChatAdministrators",
                "getChatMemberCount",
                "pinChatMessage",
                "unpinChatMessage",
                "getFile",
                "setMyCommands",
                "getMyCommands",
                "deleteMyCommands",
                "setChatMenuButton",
                "getChatMenuButton",
                "setMyName",
                "getMyName",
                "setMyDescription",
                "getMyDescription",
                "setMyShortDescription",
                "getMyShortDescription",
            )
        }
        self.can_join_groups = True

    def resolve(self, method: str) -> Handler | None:
        """Bot API method names are case-insensitive."""
        return self.methods.get(method.lower())

    # -- shared validation ------------------------------------------------------------------------

    def _writable_chat(self, p: Params) -> EmulatedChat:
        chat = self.world.chat(p.raw.get("chat_id") if p.has("chat_id") else _missing("chat_id"))
        self.world.check_bot_can_write(chat)
        return chat

    @staticmethod
    def _formatted(p: Params, field: str, entities_field: str) -> tuple[str, list[dict[str, Any]]]:
        """Apply parse_mode (or explicit entities) and Telegram's whitespace trimming."""
        text = p.string(field) or ""
        explicit = p.obj(entities_field)
        mode = (p.string("parse_mode") or "").lower()
        if explicit is not None:
            entities = _without_nulls(explicit) if isinstance(explicit, list) else []
        elif mode == "html":
            text, entities = parse_html(text)
        elif mode in ("", "markdown", "markdownv2"):
            # Markdown modes are not parsed here; the bot uses HTML (see GUIDE.md).
            entities = []
        else:
            raise bad_request("unsupported parse_mode")
        return strip_text(text, entities)

    def _text(self, p: Params, *, too_long: str) -> tuple[str, list[dict[str, Any]]]:
        if not p.has("text"):
            raise bad_request("message text is empty")
        text, entities = self._formatted(p, "text", "entities")
        if not text:
            raise bad_request("message text is empty")
        if len(text) > MAX_TEXT:
            raise bad_request(too_long)
        return text, entities

    def _caption(self, p: Params) -> tuple[str, list[dict[str, Any]]]:
        text, entities = self._formatted(p, "caption", "caption_entities")
        if len(text) > MAX_CAPTION:
            raise bad_request("message caption is too long")
        return text, entities

    @staticmethod
    def _markup(p: Params) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(inline keyboard to attach to the message, other keyboard), validated."""
        markup = p.obj("reply_markup", what="reply keyboard markup")
        if markup is None:
            return None, None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        markup = _without_nulls(markup)
        if "inline_keyboard" not in markup:
            if not any(k in markup for k in ("keyboard", "remove_keyboard", "force_reply")):
                raise bad_request("can't parse reply keyboard markup JSON object")
            return None, markup
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request(
                'can\'t parse inline keyboard button: field "inline_keyboard" '
                "must be an Array of Arrays"
            )
        for row in rows:
            for button in row:
                _check_button(button)
        # An empty inline keyboard means "no keyboard" in the resulting Message.
        if not any(rows):
            return None, None
        return {"inline_keyboard": rows}, None

    def _reply_to(self, p: Params, chat: EmulatedChat) -> dict[str, Any] | None:
        reply = p.obj("reply_parameters")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            target_chat = reply.get("chat_id", chat.id)
            allow = bool(reply.get("allow_sending_without_reply"))
        elif p.has("reply_to_message_id"):
            message_id = p.integer("reply_to_message_id")
            target_chat = chat.id
            allow = p.flag("allow_sending_without_reply")
        else:
            return None
        try:
            target = self.world.chat(target_chat)
            found = self.world.message(target.id, int(message_id))  # type: ignore[arg-type]
        except (ApiError, TypeError, ValueError):
            found = None
        if found is None:
            if allow:
                return None
            raise bad_request("message to be replied not found")
        return _reply_copy(found)

    def _compose(
        self,
        method: str,
        p: Params,
        chat: EmulatedChat,
        content: dict[str, Any],
        *,
        inline: dict[str, Any] | None,
        keyboard: dict[str, Any] | None,
        reply_to: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Build, store and return the sent Message (the caller has charged the flood limit)."""
        message = self.world.new_message(chat, self.world.bot)
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        message.update(content)
        if inline is not None:
            message["reply_markup"] = inline
        if p.flag("protect_content"):
            message["has_protected_content"] = True
        record = self.world.record_bot_message(method, message)
        record.reply_keyboard = keyboard
        return message

    # -- bot identity and webhook -----------------------------------------------------------------

    async def api_getMe(self, p: Params) -> dict[str, Any]:
        """The bot's User with the bot-only capability flags."""
        return {
            **self.world.bot.to_api(),
            "can_join_groups": self.can_join_groups,
            "can_read_all_group_messages": not self.world.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def api_logOut(self, p: Params) -> bool:
        """Accepted and ignored."""
        return True

    async def api_close(self, p: Params) -> bool:
        """Accepted and ignored."""
        return True

    async def api_setWebhook(self, p: Params) -> bool:
        """Record the URL; while set, getUpdates answers 409 like Telegram."""
        url = p.string("url") or ""
        if url and not url.lower().startswith("https://"):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        self.world.webhook_url = url
        if p.flag("drop_pending_updates"):
            self.world.drop_pending()
        return True

    async def api_deleteWebhook(self, p: Params) -> bool:
        """Forget the webhook (and optionally the queue)."""
        self.world.webhook_url = ""
        if p.flag("drop_pending_updates"):
            self.world.drop_pending()
        return True

    async def api_getWebhookInfo(self, p: Params) -> dict[str, Any]:
        """WebhookInfo with the real pending count."""
        info: dict[str, Any] = {
            "url": self.world.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self.world.pending),
        }
        if self.world.allowed_updates:
            info["allowed_updates"] = sorted(self.world.allowed_updates)
        return info

    # -- sending --------------------------------------------------------------------------------

    async def api_sendMessage(self, p: Params) -> dict[str, Any]:
        """Text 1..4096 characters after entity parsing."""
        chat = self._writable_chat(p)
        text, entities = self._text(p, too_long="message is too long")
        inline, keyboard = self._markup(p)
        reply_to = self._reply_to(p, chat)
        self.gate("sendMessage", chat)
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        return self._compose(
            "sendMessage", p, chat, content, inline=inline, keyboard=keyboard, reply_to=reply_to
        )

    def _input_file(self, p: Params, field: str, kind: str) -> StoredFile | Upload:
        value = p.file(field)
        if value is None:
            raise bad_request(f"there is no {kind} in the request")
        if isinstance(value, Upload):
            if not value.content:
                raise bad_request("file must be non-empty")
            return value
        stored = self.world.files.get(value)
        if stored is None and re.match(r"(?i)https?://", value):
            # Telegram would download the URL; here any URL yields a plausible stand-in file.
            name = value.rsplit("/", 1)[-1] or kind
            return Upload(name, None, _PLACEHOLDER_PNG if kind == "photo" else value.encode())
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if (stored.kind == "photo") != (kind == "photo"):
            raise bad_request("type of file mismatch")
        return stored

    async def api_sendPhoto(self, p: Params) -> dict[str, Any]:
        """An uploaded image (multipart), a known file_id or a URL."""
        chat = self._writable_chat(p)
        source = self._input_file(p, "photo", "photo")
        size = None
        if isinstance(source, Upload):
            size = image_size(source.content)
            if size is None:
                raise bad_request("IMAGE_PROCESS_FAILED")
        caption, entities = self._caption(p)
        inline, keyboard = self._markup(p)
        reply_to = self._reply_to(p, chat)
        self.gate("sendPhoto", chat)
        if isinstance(source, Upload):
            assert size is not None
            source = self.world.files.add("photo", source.content, width=size[0], height=size[1])
        content: dict[str, Any] = {"photo": self.world.files.photo_sizes(source)}
        _add_caption(content, caption, entities)
        return self._compose(
            "sendPhoto", p, chat, content, inline=inline, keyboard=keyboard, reply_to=reply_to
        )

    async def api_sendDocument(self, p: Params) -> dict[str, Any]:
        """Any uploaded file or a known file_id; returns a Document with fresh ids."""
        chat = self._writable_chat(p)
        source = self._input_file(p, "document", "document")
        caption, entities = self._caption(p)
        inline, keyboard = self._markup(p)
        reply_to = self._reply_to(p, chat)
        self.gate("sendDocument", chat)
        if isinstance(source, Upload):
            source = self.world.files.add(
                "document",
                source.content,
                file_name=source.filename or "document",
                mime_type=source.content_type
                if source.content_type not in (None, "application/octet-stream")
                else None,
            )
        document: dict[str, Any] = {
            "file_id": source.file_id,
            "file_unique_id": source.file_unique_id,
            "file_size": len(source.content),
        }
        if source.file_name:
            document["file_name"] = source.file_name
        if source.mime_type:
            document["mime_type"] = source.mime_type
        content: dict[str, Any] = {"document": document}
        _add_caption(content, caption, entities)
        return self._compose(
            "sendDocument", p, chat, content, inline=inline, keyboard=keyboard, reply_to=reply_to
        )

    async def api_sendChatAction(self, p: Params) -> bool:
        """typing… indicators; only the action name is checked."""
        chat = self._writable_chat(p)
        action = p.string("action") or ""
        if action not in _CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        self.world.chat_actions.append((chat.id, action))
        return True

    # -- editing and deleting -------------------------------------------------------------------

    def _editable(self, p: Params) -> tuple[EmulatedChat, dict[str, Any]]:
        if p.has("inline_message_id"):
            raise bad_request("message to edit not found")  # inline mode is not emulated
        chat = self._writable_chat(p)
        message_id = p.integer("message_id", empty="message identifier is not specified")
        assert message_id is not None
        message = self.world.message(chat.id, message_id)
        if message is None:
            raise bad_request("message to edit not found")
        if message.get("from", {}).get("id") != self.world.bot.id:
            raise bad_request("message can't be edited")
        return chat, message

    def _store_edit(self, old: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        new = {k: v for k, v in old.items() if k not in ("reply_markup", "edit_date")}
        for key, value in changes.items():
            if value:
                new[key] = value
            else:
                new.pop(key, None)
        if {k: v for k, v in new.items() if k != "edit_date"} == {
            k: v for k, v in old.items() if k != "edit_date"
        }:
            raise bad_request(_NOT_MODIFIED)
        new["edit_date"] = int(time.time())
        self.world.record_edit(new)
        return new

    async def api_editMessageText(self, p: Params) -> dict[str, Any]:
        """Same text, entities and keyboard → 400 "message is not modified"."""
        _, message = self._editable(p)
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        text, entities = self._text(p, too_long="MESSAGE_TOO_LONG")
        # Editing without reply_markup removes the inline keyboard, as on Telegram.
        inline, _ = self._markup(p)
        return self._store_edit(
            message, {"text": text, "entities": entities, "reply_markup": inline}
        )

    async def api_editMessageCaption(self, p: Params) -> dict[str, Any]:
        """Caption of a media message."""
        _, message = self._editable(p)
        if "text" in message:
            raise bad_request("there is no caption in the message to edit")
        caption, entities = self._caption(p)
        inline, _ = self._markup(p)
        return self._store_edit(
            message,
            {"caption": caption, "caption_entities": entities, "reply_markup": inline},
        )

    async def api_editMessageReplyMarkup(self, p: Params) -> dict[str, Any]:
        """Replace or remove the inline keyboard."""
        _, message = self._editable(p)
        inline, _ = self._markup(p)
        return self._store_edit(message, {"reply_markup": inline})

    def _delete_one(self, chat: EmulatedChat, message_id: int) -> None:
        message = self.world.message(chat.id, message_id)
        if message is None:
            raise bad_request("message to delete not found")
        own = message.get("from", {}).get("id") == self.world.bot.id
        if chat.is_group and not own and not self.world.is_bot_admin(chat):
            raise bad_request("message can't be deleted")
        self.world.record_delete(chat.id, message_id)

    async def api_deleteMessage(self, p: Params) -> bool:
        """The bot's own messages anywhere; others' in private chats or as a group admin."""
        chat = self._writable_chat(p)
        message_id = p.integer("message_id", empty="message identifier is not specified")
        assert message_id is not None
        self._delete_one(chat, message_id)
        return True

    async def api_deleteMessages(self, p: Params) -> bool:
        """Best effort, like Telegram: missing messages are skipped."""
        chat = self._writable_chat(p)
        ids = p.obj("message_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise bad_request("message_ids must be a non-empty list of at most 100 ids")
        for message_id in ids:
            try:
                self._delete_one(chat, int(message_id))
            except ApiError:
                continue
        return True

    # -- callback queries -------------------------------------------------------------------------

    async def api_answerCallbackQuery(self, p: Params) -> bool:
        """Each pending query can be answered once."""
        query_id = p.string("callback_query_id") or ""
        record = self.world.callback_queries.get(query_id)
        if record is None or record.answered:
            raise bad_request(_QUERY_INVALID)
        text = p.string("text")
        if text is not None and len(text) > MAX_ANSWER_TEXT:
            raise bad_request("MESSAGE_TOO_LONG")
        answer: dict[str, Any] = {
            "callback_query_id": query_id,
            "text": text,
            "show_alert": p.flag("show_alert"),
            "url": p.string("url"),
            "cache_time": p.integer("cache_time") or 0,
        }
        record.answered = True
        record.answer = answer
        self.world.callback_answers.append(answer)
        self.world.notify()
        return True

    # -- chats ----------------------------------------------------------------------------------

    def _readable_chat(self, p: Params) -> EmulatedChat:
        chat = self.world.chat(p.raw.get("chat_id") if p.has("chat_id") else _missing("chat_id"))
        if chat.is_group and chat.bot_status == KICKED:
            self.world.check_bot_can_write(chat)
        return chat

    async def api_getChat(self, p: Params) -> dict[str, Any]:
        """ChatFullInfo."""
        return self._readable_chat(p).to_full_api()

    async def api_getChatMember(self, p: Params) -> dict[str, Any]:
        """ChatMember by status; unknown users are "left"."""
        chat = self._readable_chat(p)
        user_id = p.integer("user_id", empty="user_id is empty")
        assert user_id is not None
        user = self.world.bot if user_id == self.world.bot.id else self.world.users.get(user_id)
        if user is None:
            raise bad_request("user not found")
        return member_json(user.to_api(), self.world.member_status(chat, user_id))

    async def api_getChatAdministrators(self, p: Params) -> list[dict[str, Any]]:
        """Creator and administrators, the bot included when it is one."""
        chat = self._readable_chat(p)
        if not chat.is_group:
            return []
        admins = [
            member_json(self.world.users[uid].to_api(), status)
            for uid, status in chat.members.items()
            if status in (CREATOR, ADMINISTRATOR) and uid in self.world.users
        ]
        if self.world.is_bot_admin(chat):
            admins.append(member_json(self.world.bot.to_api(), chat.bot_status))
        return admins

    async def api_getChatMemberCount(self, p: Params) -> int:
        """People and bot currently in the chat."""
        chat = self._readable_chat(p)
        if not chat.is_group:
            return 2
        people = sum(1 for status in chat.members.values() if status not in (LEFT, KICKED))
        return people + (0 if chat.bot_status in (LEFT, KICKED) else 1)

    async def api_pinChatMessage(self, p: Params) -> bool:
        """Groups need the bot to be an administrator."""
        chat = self._writable_chat(p)
        message_id = p.integer("message_id", empty="message identifier is not specified")
        if chat.is_group and not self.world.is_bot_admin(chat):
            raise bad_request("not enough rights to manage pinned messages in the chat")
        if self.world.message(chat.id, int(message_id or 0)) is None:
            raise bad_request("message to pin not found")
        chat.pinned_message_id = message_id
        return True

    async def api_unpinChatMessage(self, p: Params) -> bool:
        """Unpin the given or the current pinned message."""
        chat = self._writable_chat(p)
        if chat.is_group and not self.world.is_bot_admin(chat):
            raise bad_request("not enough rights to manage pinned messages in the chat")
        chat.pinned_message_id = None
        return True

    async def api_getFile(self, p: Params) -> dict[str, Any]:
        """File with a file_path served under /file/bot<token>/."""
        file_id = p.string("file_id", empty="file_id not specified") or ""
        stored = self.world.files.get(file_id)
        if stored is None:
            raise bad_request("wrong file_id or the file is temporarily unavailable")
        if len(stored.content) > MAX_DOWNLOAD:
            raise bad_request("file is too big")
        described = self.world.files.describe(stored)
        described["file_id"] = file_id
        return described

    # -- commands and bot profile ---------------------------------------------------------------

    def _scope_key(self, p: Params) -> tuple[str, str]:
        scope = p.obj("scope", what="scope") or {"type": "default"}
        if not isinstance(scope, dict) or scope.get("type") not in _SCOPES:
            raise bad_request("unsupported bot command scope type specified")
        kind = scope["type"]
        key = kind
        if kind in ("chat", "chat_administrators", "chat_member"):
            chat = self.world.chat(scope.get("chat_id"))
            key = f"{kind}:{chat.id}"
            if kind == "chat_member":
                user_id = scope.get("user_id")
                if not isinstance(user_id, int) or user_id not in self.world.users:
                    raise bad_request("user not found")
                key += f":{user_id}"
        language = p.string("language_code") or ""
        if language and not _LANGUAGE_RE.fullmatch(language):
            raise bad_request("invalid language code specified")
        return key, language

    async def api_setMyCommands(self, p: Params) -> bool:
        """Commands per (scope, language_code); an empty list deletes them."""
        commands = p.obj("commands", what="commands")
        if commands is None:
            commands = []
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        if len(commands) > MAX_COMMANDS:
            raise bad_request("BOT_COMMANDS_TOO_MUCH")
        cleaned = []
        for command in commands:
            if not isinstance(command, dict):
                raise bad_request("can't parse BotCommand: expected an Object")
            for field in ("command", "description"):
                if not isinstance(command.get(field), str):
                    raise bad_request(f"can't parse BotCommand: Can't find field \"{field}\"")
            if not _COMMAND_RE.fullmatch(command["command"]):
                raise bad_request("BOT_COMMAND_INVALID")
            description = command["description"].strip()
            if not description:
                raise bad_request("command description must be non-empty")
            if len(description) > 256:
                raise bad_request("command description is too long")
            cleaned.append({"command": command["command"], "description": description})
        key = self._scope_key(p)
        if cleaned:
            self.world.commands[key] = cleaned
        else:
            self.world.commands.pop(key, None)
        self.world.notify()
        return True

    async def api_getMyCommands(self, p: Params) -> list[dict[str, Any]]:
        """Exactly the list for that scope and language (no fallback), as Telegram."""
        return list(self.world.commands.get(self._scope_key(p), []))

    async def api_deleteMyCommands(self, p: Params) -> bool:
        """Remove the list for that scope and language."""
        self.world.commands.pop(self._scope_key(p), None)
        self.world.notify()
        return True

    async def api_setChatMenuButton(self, p: Params) -> bool:
        """Per chat, or the default when chat_id is absent."""
        button = p.obj("menu_button", what="menu button") or {"type": "default"}
        if not isinstance(button, dict) or button.get("type") not in (
            "default",
            "commands",
            "web_app",
        ):
            raise bad_request("can't parse menu button JSON object")
        key = str(self.world.chat(p.raw["chat_id"]).id) if p.has("chat_id") else ""
        self.world.bot_settings[("menu_button", key)] = _without_nulls(button)
        return True

    async def api_getChatMenuButton(self, p: Params) -> dict[str, Any]:
        """The stored button, falling back to the default one."""
        key = str(self.world.chat(p.raw["chat_id"]).id) if p.has("chat_id") else ""
        settings = self.world.bot_settings
        return settings.get(("menu_button", key)) or settings.get(
            ("menu_button", ""), {"type": "commands"}
        )

    def _set_text(self, what: str, p: Params) -> bool:
        field, limit = _BOT_TEXTS[what]
        value = p.string(field) or ""
        if len(value) > limit:
            raise bad_request(f"bot {what.replace('_', ' ')} is too long")
        self.world.bot_settings[(what, p.string("language_code") or "")] = value
        return True

    def _get_text(self, what: str, p: Params) -> dict[str, str]:
        language = p.string("language_code") or ""
        settings = self.world.bot_settings
        value = settings.get((what, language), settings.get((what, ""), ""))
        if what == "name" and not value:
            value = self.world.bot.first_name
        return {_BOT_TEXTS[what][0]: value}

    async def api_setMyName(self, p: Params) -> bool:
        """Per language."""
        return self._set_text("name", p)

    async def api_getMyName(self, p: Params) -> dict[str, str]:
        """Per language, falling back to the default."""
        return self._get_text("name", p)

    async def api_setMyDescription(self, p: Params) -> bool:
        """Per language."""
        return self._set_text("description", p)

    async def api_getMyDescription(self, p: Params) -> dict[str, str]:
        """Per language, falling back to the default."""
        return self._get_text("description", p)

    async def api_setMyShortDescription(self, p: Params) -> bool:
        """Per language."""
        return self._set_text("short_description", p)

    async def api_getMyShortDescription(self, p: Params) -> dict[str, str]:
        """Per language, falling back to the default."""
        return self._get_text("short_description", p)


def _missing(name: str) -> NoReturn:
    raise bad_request(f"{name} is empty")


def _add_caption(content: dict[str, Any], caption: str, entities: list[dict[str, Any]]) -> None:
    if caption:
        content["caption"] = caption
        if entities:
            content["caption_entities"] = entities


def _check_button(button: Any) -> None:
    """One InlineKeyboardButton, checked as Telegram does."""
    if not isinstance(button, dict):
        raise bad_request(
            "can't parse inline keyboard button: InlineKeyboardButton must be an Object"
        )
    if not isinstance(button.get("text"), str):
        raise bad_request("can't parse inline keyboard button: Can't find field \"text\"")
    actions = _BUTTON_ACTIONS.intersection(button)
    if not actions:
        raise bad_request(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA:
            raise bad_request("BUTTON_DATA_INVALID")
    if "url" in button and not _URL_RE.match(str(button["url"])):
        raise bad_request(
            f"inline keyboard button URL '{button['url']}' is invalid: Wrong HTTP URL"
        )


# An 800x600 PNG header: enough for image_size() when a photo is given by URL.
_PLACEHOLDER_PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (800).to_bytes(4, "big") + (600).to_bytes(4, "big")
)
