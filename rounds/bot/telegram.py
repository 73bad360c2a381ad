"""The Telegram transport: private chats and the team's groups in; cards, edits, replies and
private messages out through the outbox.

A python-telegram-bot ``Application`` does the parsing and dispatching, but never owns the
loop: no ``run_polling``. Polling is a small loop of Rounds' own around ``get_updates``
that moves the offset past an update only once it has been handled and recorded, so a
crash loses no report; webhook mode feeds updates from Rounds' own HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import os
import random
import time
from collections import deque
from datetime import timedelta
from typing import Any

from aiohttp import web
from telegram import (
    BotCommand,
    BotCommandScopeDefault,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    ReplyParameters,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application, CallbackQueryHandler, ContextTypes, MessageHandler, filters

from rounds import commands
from rounds.config import Config
from rounds.i18n import LANGUAGES, Catalog
from rounds.itsm import attachments
from rounds.itsm.people import Person
from rounds.reply import Reply

from .core import Bot, Inbound
from .dedup import first_time, forget
from .dispatcher import Dispatcher, Outgoing, SendError

log = logging.getLogger(__name__)

PLATFORM = "telegram"
TEXT_LIMIT = 4096
CALLBACK_LIMIT = 64  # bytes of callback_data Telegram accepts
SEEN = timedelta(days=1)
DOUBLE_TAP = timedelta(seconds=5)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Telegram's limits: about one message a second in a chat, twenty a minute in a group,
# thirty a second in all.
PRIVATE_GAP, GROUP_GAP, GLOBAL_PER_SECOND = 1.0, 3.0, 30
CREDENTIALS_WAIT = 300.0  # seconds to hold messages while the bot's token is refused


def person_for(bot: Bot, user: Any) -> Person:
    """The configured person with this Telegram id, or a stranger (staff) named after it."""
    display = " ".join(p for p in (user.first_name, user.last_name) if p)
    return bot.env.people.by_telegram(user.id) or bot.env.people.stranger(
        PLATFORM, user.id, display
    )


def render(reply: Reply) -> str:
    """A Reply as Telegram HTML, people's text escaped."""
    lines = [html.escape(reply.text, quote=False)]
    lines += [
        f"<b>{html.escape(k, quote=False)}</b>: {html.escape(v, quote=False)}"
        for k, v in reply.fields
    ]
    if reply.footer:
        lines.append(f"<i>{html.escape(reply.footer, quote=False)}</i>")
    return "\n".join(lines)


def utf16_len(text: str) -> int:
    """Telegram counts lengths in UTF-16 code units: an emoji is two."""
    return len(text.encode("utf-16-le")) // 2


def cut_utf16(text: str, limit: int) -> str:
    """The longest prefix of ``text`` within ``limit`` UTF-16 units."""
    used = 0
    for n, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return text[:n]
    return text


def split(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Pieces of at most ``limit`` UTF-16 units, cut at line breaks, never inside a tag."""
    pieces: list[str] = []
    while utf16_len(text) > limit:
        head = cut_utf16(text, limit)
        cut = head.rfind("\n")
        if cut <= 0:
            cut = len(head)
            opened = head.rfind("<")
            if opened > head.rfind(">"):  # do not cut a tag or an entity in half
                cut = opened
            amp = head.rfind("&", 0, cut)
            if amp > head.rfind(";", 0, cut):
                cut = amp
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n")
    return [*pieces, text] if text else pieces


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    """Buttons whose command fits Telegram's 64 bytes of callback data, two to a row."""
    buttons = [
        InlineKeyboardButton(b.label[:64], callback_data=b.command)
        for b in reply.buttons
        if len(b.command.encode()) <= CALLBACK_LIMIT
    ]
    if not buttons:
        return None
    return InlineKeyboardMarkup([buttons[i : i + 2] for i in range(0, len(buttons), 2)])


class TelegramSender:
    """Delivers outbox messages with the Bot API, within Telegram's rate limits."""

    def __init__(self, application: Application) -> None:
        self.bot = application.bot
        self._last: dict[str, float] = {}
        self._recent: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def send(self, item: Outgoing) -> str:
        text = render(item.message)
        markup = keyboard(item.message)
        try:
            if item.op == "edit" and item.edit_of is not None:
                chat, message_id = json.loads(item.edit_of)
                await self._pace(str(chat))
                try:
                    await self.bot.edit_message_text(
                        chat_id=chat,
                        message_id=message_id,
                        text=cut_utf16(text, TEXT_LIMIT),
                        parse_mode=ParseMode.HTML,
                        reply_markup=markup,
                    )
                except BadRequest as exc:
                    if "not modified" not in str(exc).lower():
                        raise
                return item.edit_of
            chat = item.address
            reply_to = None
            if item.thread_of is not None:
                chat, parent = json.loads(item.thread_of)
                reply_to = ReplyParameters(message_id=parent, allow_sending_without_reply=True)
            pieces = split(text) or [" "]
            first_id = None
            for n, piece in enumerate(pieces):
                await self._pace(str(chat))
                last = n == len(pieces) - 1
                sent = await self.bot.send_message(
                    chat_id=chat,
                    text=piece,
                    parse_mode=ParseMode.HTML,
                    reply_markup=markup if last else None,
                    reply_parameters=reply_to if n == 0 else None,
                )
                first_id = first_id or sent.message_id
            return json.dumps([sent.chat_id, first_id])
        except RetryAfter as exc:
            wait = exc.retry_after
            seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
            raise SendError("flood control", retry_after=seconds) from exc
        except InvalidToken as exc:
            # A token being replaced: hold the messages rather than drop them.
            raise SendError("telegram: token rejected", retry_after=CREDENTIALS_WAIT) from exc
        except (BadRequest, Forbidden, ChatMigrated) as exc:
            raise SendError(f"telegram: {exc}", permanent=True) from exc
        except TelegramError as exc:  # TimedOut, 5xx and network trouble
            raise SendError(f"network: {type(exc).__name__}") from exc

    async def _pace(self, chat: str) -> None:
        """Reserve the next slot for this chat and overall, then wait for it.

        Reservations are taken under a lock, so concurrent sends (the dispatcher sends a
        batch at once) queue behind each other instead of all waking together.
        """
        async with self._lock:
            now = time.monotonic()
            gap = GROUP_GAP if chat.startswith("-") else PRIVATE_GAP
            slot = max(now, self._last.get(chat, -gap) + gap)
            while self._recent and self._recent[0] <= slot - 1.0:
                self._recent.popleft()
            if len(self._recent) >= GLOBAL_PER_SECOND:
                slot = max(slot, self._recent[-GLOBAL_PER_SECOND] + 1.0)
            self._last[chat] = slot
            self._recent.append(slot)
        if slot > now:
            await asyncio.sleep(slot - now)


class TelegramTransport:
    """Telegram in and out: polling or webhook, and the outbox sender."""

    def __init__(self, bot: Bot, dispatcher: Dispatcher, config: Config) -> None:
        # PTB 22 gives durations (RetryAfter.retry_after) as ints with a deprecation warning
        # unless this opts in to the timedeltas of its next major version.
        os.environ.setdefault("PTB_TIMEDELTA", "true")
        self.bot = bot
        self.section = config.telegram
        self.groups = {str(c.telegram) for c in config.channels.values() if c.telegram}
        builder = (
            Application.builder()
            .token(self.section.token)
            .base_url(self.section.base_url)
            .base_file_url(self.section.base_file_url)
            .updater(None)
        )
        self.application = builder.build()
        self.application.add_handler(CallbackQueryHandler(self._on_callback))
        self.application.add_handler(MessageHandler(filters.ALL, self._on_message))
        self.application.add_error_handler(self._on_error)
        self._poller: asyncio.Task | None = None
        self._failure: BaseException | None = None
        self._initialized = False
        self._stopping = asyncio.Event()
        self.last_update_at: float | None = None
        dispatcher.senders[PLATFORM] = TelegramSender(self.application)

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        await self._retry(self._initialize, "getMe")
        if not self._initialized:
            return  # stopped meanwhile, or the token was refused (logged)
        await self._retry(self._register_commands, "setMyCommands")
        if self.section.mode == "webhook":
            await self._retry(self._set_webhook, "setWebhook")
        else:
            await self._retry(self.application.bot.delete_webhook, "deleteWebhook")
            self._poller = asyncio.create_task(self._poll(), name="telegram-poll")
        log.info("telegram started mode=%s", self.section.mode)

    async def stop(self) -> None:
        self._stopping.set()
        if self._poller is not None:
            await self._poller
        if self._initialized:
            await self.application.shutdown()

    async def health(self) -> dict[str, Any]:
        age = (
            None
            if self.last_update_at is None
            else round(time.monotonic() - self.last_update_at, 1)
        )
        return {"mode": self.section.mode, "status": "ok", "last_update_seconds": age}

    async def _retry(self, call: Any, name: str) -> None:
        """Retry a start-up call through network trouble; give up on a refusal, loudly."""
        delay = 1.0
        while not self._stopping.is_set():
            try:
                await call()
                return
            except (BadRequest, Forbidden, InvalidToken) as exc:  # BadRequest is a NetworkError
                log.error("telegram %s refused: %s", name, exc)
                return
            except TelegramError as exc:
                log.warning(
                    "telegram %s failed (%s); retrying in %.0fs", name, type(exc).__name__, delay
                )
                await self._sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 60.0)

    async def _initialize(self) -> None:
        await self.application.initialize()
        self._initialized = True

    async def _set_webhook(self) -> None:
        await self.application.bot.set_webhook(
            url=self.section.webhook_url,
            secret_token=self.section.webhook_secret,
            allowed_updates=["message", "edited_message", "callback_query"],
        )

    async def _register_commands(self) -> None:
        """The command menu, in each language; the commands are the same in both."""
        commands.load_all()
        names = [n for n in commands.REGISTRY if n == n.lower() and len(n) <= 32]
        for language in LANGUAGES:
            words = Catalog(language)
            menu = [BotCommand(n, words.t(f"help.{n}.summary")[:256]) for n in names]
            await self.application.bot.set_my_commands(menu, language_code=language)
        default = self.bot.env.words
        await self.application.bot.set_my_commands(
            [BotCommand(n, default.t(f"help.{n}.summary")[:256]) for n in names],
            scope=BotCommandScopeDefault(),
        )

    async def _poll(self) -> None:
        """getUpdates in a loop; the offset passes an update only once it is handled."""
        offset: int | None = None
        delay = 1.0
        while not self._stopping.is_set():
            try:
                updates = await self.application.bot.get_updates(
                    offset=offset,
                    timeout=self.section.poll_seconds,
                    allowed_updates=["message", "edited_message", "callback_query"],
                )
                delay = 1.0
            except TelegramError as exc:  # network trouble, or a conflicting poller (409)
                log.warning(
                    "telegram getUpdates failed (%s); retrying in %.0fs", type(exc).__name__, delay
                )
                await self._sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 60.0)
                continue
            for update in updates:
                try:
                    await self.receive(update)
                except Exception:
                    # The database may be down: keep the offset, try this update again.
                    log.exception(
                        "telegram update not handled update_id=%s; will retry", update.update_id
                    )
                    await self._sleep(delay)
                    break
                offset = update.update_id + 1

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def receive(self, update: Update) -> None:
        """Handle one update once: a redelivered update (same id) is skipped."""
        self.last_update_at = time.monotonic()
        key = f"telegram:update:{update.update_id}"
        if not await asyncio.to_thread(first_time, self.bot.db, key, self.bot.env.now(), SEEN):
            log.info("telegram update already handled update_id=%s", update.update_id)
            return
        self._failure = None
        await self.application.process_update(update)  # handler errors land in _on_error
        if self._failure is not None:
            # Not handled (the database may be down): forget it, so that it comes again.
            await asyncio.to_thread(forget, self.bot.db, key)
            raise self._failure

    async def handle_webhook(self, request: web.Request) -> web.Response:
        """``POST /telegram/webhook``: only Telegram, which knows the secret, is heard."""
        if request.headers.get(SECRET_HEADER) != self.section.webhook_secret:
            await asyncio.to_thread(self.bot.refuse_request, PLATFORM, "bad webhook secret")
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            data = await request.json()
            update = Update.de_json(data, self.application.bot)
        except (ValueError, TypeError, KeyError):
            return web.json_response({"error": "not an update"}, status=400)
        try:
            await self.receive(update)
        except Exception:
            log.exception("telegram webhook update not handled; Telegram will send it again")
            return web.json_response({"error": "try again"}, status=500)
        return web.json_response({"ok": True})

    # --- handlers ------------------------------------------------------------------

    def _heard_in(self, chat: Any) -> bool:
        return chat.type == "private" or str(chat.id) in self.groups

    async def _on_message(self, update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
        message, chat, user = (
            update.effective_message,
            update.effective_chat,
            update.effective_user,
        )
        if message is None or chat is None or user is None or user.is_bot:
            return
        if update.edited_message is not None or not self._heard_in(chat):
            return  # edits are not new commands; unknown groups are not ours to answer
        words = self.bot.env.words
        text = message.text or message.caption or ""
        if chat.type != "private" and not text.startswith("/"):
            return  # chatter in a group; commands there start with "/"
        if text.split("@", 1)[0].strip() == "/start":
            text = "/help"  # what every new Telegram user sends first
        photos: tuple[str, ...] = ()
        if message.photo:
            stored = await self._download(message.photo, chat.id)
            if stored is None:
                return
            photos = (stored,)
        elif not text:  # a sticker, a voice note, a file
            await self._say(chat.id, Reply(words.t("telegram.text_only")))
            return
        inbound = Inbound(
            PLATFORM,
            person_for(self.bot, user),
            text,
            chat=str(chat.id),
            photos=photos,
            accepts_photos=chat.type == "private",
        )
        for reply in await self.bot.handle(inbound):
            await self._say(chat.id, reply, reply_to=message.message_id)

    async def _on_callback(self, update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None or query.message is None:
            return
        chat = query.message.chat
        key = f"telegram:press:{query.from_user.id}:{query.message.message_id}:{query.data}"
        if not await asyncio.to_thread(
            first_time, self.bot.db, key, self.bot.env.now(), DOUBLE_TAP
        ):
            await self._answer(query, "", alert=False)  # the first press is being handled
            return
        inbound = Inbound(
            PLATFORM,
            person_for(self.bot, query.from_user),
            query.data or "",
            chat=str(chat.id),
            accepts_photos=chat.type == "private",
        )
        replies = await self.bot.handle(inbound)
        text = "\n".join(r.text for r in replies)
        refused = any(r.refused for r in replies)
        await self._answer(query, text, alert=refused)  # a refusal only the presser sees
        if not refused and chat.type == "private":
            for reply in replies:
                await self._say(chat.id, reply)

    async def _download(self, sizes: Any, chat_id: int) -> str | None:
        """Store the largest size of a photo within the limit; None when there is none."""
        limit = self.section.max_photo_bytes
        fitting = [s for s in sizes if (s.file_size or 0) <= limit]
        words = self.bot.env.words
        if not fitting:
            await self._say(chat_id, Reply(words.t("photo.too_large", limit=limit // 1_000_000)))
            return None
        best = max(fitting, key=lambda s: (s.file_size or 0, s.width * s.height))
        try:
            file = await self.application.bot.get_file(best.file_id)
            content = bytes(await file.download_as_bytearray())
        except TelegramError as exc:
            log.warning("telegram photo download failed: %s", type(exc).__name__)
            await self._say(chat_id, Reply(words.t("photo.download_failed")))
            return None
        if len(content) > limit:
            await self._say(chat_id, Reply(words.t("photo.too_large", limit=limit // 1_000_000)))
            return None
        env = self.bot.env
        return await asyncio.to_thread(
            attachments.store, env.config.rounds.data_dir, content, ".jpg", env.now()
        )

    @staticmethod
    async def _answer(query: Any, text: str, alert: bool) -> None:
        try:
            await query.answer(text=cut_utf16(text, 200), show_alert=alert)
        except TelegramError as exc:
            log.warning("telegram answerCallbackQuery failed: %s", type(exc).__name__)

    async def _say(self, chat_id: int, reply: Reply, reply_to: int | None = None) -> None:
        """Answer the person who wrote, directly (not through the outbox)."""
        pieces = split(render(reply))
        for n, piece in enumerate(pieces):
            try:
                await self.application.bot.send_message(
                    chat_id=chat_id,
                    text=piece,
                    parse_mode=ParseMode.HTML,
                    reply_markup=keyboard(reply) if n == len(pieces) - 1 else None,
                    reply_parameters=ReplyParameters(
                        message_id=reply_to, allow_sending_without_reply=True
                    )
                    if reply_to and n == 0
                    else None,
                )
            except TelegramError as exc:
                log.warning("telegram reply failed: %s", type(exc).__name__)
                return
        for relative in reply.images[:10]:
            try:
                content = await asyncio.to_thread(
                    lambda r=relative: attachments.path_of(self.bot.env, r).read_bytes()
                )
                await self.application.bot.send_photo(chat_id=chat_id, photo=content)
            except (OSError, ValueError, TelegramError) as exc:
                log.warning("telegram photo not sent: %s", type(exc).__name__)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        self._failure = context.error
        log.error(
            "telegram handler failed: %s", type(context.error).__name__, exc_info=context.error
        )
