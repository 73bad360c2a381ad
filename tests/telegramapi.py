"""A fake Telegram Bot API on 127.0.0.1, for tests that drive the real python-telegram-bot.

``FakeTelegram`` runs an aiohttp server in a background thread with its own event loop, so a
plain synchronous test and a test running its own loop (``asyncio.run``, a bot thread) can
both point ``telegram.Bot(token, base_url=fake.base_url, base_file_url=fake.base_file_url)``
(or an ``ApplicationBuilder`` with the same three settings) at it. It speaks the subset of
the Bot API that Rounds calls, keeps the resulting state (messages per chat after edits,
callback answers, commands, webhook), records every call, queues updates for getUpdates
(``push_*``) or builds them for a webhook test to POST itself (``*_json``), and can be told
to fail the next calls of a method (429 with retry_after, 5xx, 400) or to go down (502).

How python-telegram-bot 22.8 talks to the server, which the fake follows:

* the method URL is ``base_url + token + "/" + method``: Bot appends the token itself, so
  ``base_url`` ends in ``/bot``. Files are ``base_file_url + token + "/" + file_path``:
  ``Bot.get_file`` rewrites File.file_path to that absolute URL, and File.download_* GET it
  with the path percent-quoted (the ":" in the token arrives as ``%3A``). A *relative*
  file_path that names an existing file under the current directory is read from disk
  instead, so the fake's paths live under ``tg-fake/`` to stay clear of the checkout;
* every method is a POST. Without uploads the body is an ``application/x-www-form-urlencoded``
  form (never JSON); with an upload (send_photo with bytes) it is ``multipart/form-data``.
  Strings go as-is, everything else JSON-encoded: ints ("42"), booleans ("true"), and
  nested objects (reply_markup, reply_parameters, commands, scope). The fake decodes them
  back, so ``calls[i].args`` holds ints, bools, dicts and, for uploads, bytes. PTB 22 sends
  ``reply_to_message_id=`` as ``reply_parameters={"message_id": ...}``;
* errors follow the HTTP status, not the body: any body with ``parameters.retry_after``
  raises ``RetryAfter`` (whatever the status), 400 ``BadRequest``, 401 and 404
  ``InvalidToken`` (also for a missing file download), 403 ``Forbidden``, 409 ``Conflict``,
  anything else (500, 502, ...) plain ``NetworkError``. BadRequest and TimedOut are
  subclasses of NetworkError, so ``except NetworkError`` also catches a BadRequest. The
  message drops a "Bad Request: " prefix and is ``str.capitalize()``d (rest lowercased);
* ``RetryAfter.retry_after`` is an int (seconds) and reading it, which its own constructor
  already does, emits a PTBDeprecationWarning; with ``PTB_TIMEDELTA=1`` in the environment
  it is a ``datetime.timedelta``;
* ``Bot.initialize`` (``async with bot``) calls getMe and rewords a 401/404 as
  ``InvalidToken("The token `...` was rejected by the server.")``; after it,
  ``do_api_request`` of an unknown method raises ``EndPointNotFound``;
* getUpdates goes through its own pool of ONE connection: a second get_updates on the same
  Bot queues behind the first instead of reaching the server (two Bots do compete);
* httpx honours HTTP(S)_PROXY/ALL_PROXY and NO_PROXY from the environment when the Bot is
  built: clear them (the tests do) if CI sets a proxy.

Telegram behaviour modelled because bots trip on it: HTML text is parsed (unknown or
unbalanced tags and a bare "<" are 400 "can't parse entities"; the returned Message carries
the plain text plus entities, ``messages()`` the text as sent); the 4096/1024 limits count
UTF-16 units of the parsed text; editMessageText without reply_markup removes the inline
keyboard; an edit changing nothing is 400 "message is not modified"; callback_data over 64
bytes is 400 BUTTON_DATA_INVALID; a callback query can be answered once; getUpdates answers
409 while a webhook is set or when a newer getUpdates replaces a waiting one (a poll whose
client hung up, as PTB's Updater does on stop, ends quietly). Error texts follow Telegram's
where known. Not modelled: allowed_updates (recorded, not applied), webhook URL checks (any
URL is accepted), Markdown parsing, inline messages, flood limits (use ``fail`` and
``sent_times``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import html
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web

from tests.loopback import LoopbackServer

MAX_TEXT, MAX_CAPTION = 4096, 1024
# Form fields Telegram takes as plain strings; all others arrive JSON-encoded.
STRING_FIELDS = frozenset(
    {"text", "caption", "parse_mode", "callback_query_id", "url", "secret_token", "photo"}
    | {"language_code", "file_id", "inline_message_id", "ip_address"}
)
# Supported HTML tags and the entity each becomes (None: accepted, no entity kept).
HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "code": "code",
    "pre": "pre",
    "a": "text_link",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "blockquote": "blockquote",
    "tg-emoji": None,
}
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)(\s[^<>]*)?>")
_CHAR_REF = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")
_HREF = re.compile(r"""href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")
_TOKEN_SHAPE = re.compile(r"[0-9]+:[A-Za-z0-9_-]+")
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
STICKER = {"type": "regular", "width": 512, "height": 512, "is_animated": False}
STICKER |= {"is_video": False, "emoji": "\N{THUMBS UP SIGN}"}
VOICE = {"duration": 2, "mime_type": "audio/ogg"}
DOCUMENT = {"file_name": "document.bin", "mime_type": "application/octet-stream"}
OUTAGE_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Call:
    """One request the fake received: ``at`` is time.monotonic() on arrival.

    ``method`` is the Bot API method in its canonical spelling, or "download" for a file.
    """

    method: str
    args: dict[str, Any]
    at: float
    status: int = 200
    description: str | None = None

    @property
    def failed(self) -> bool:
        return self.status != 200


@dataclass(frozen=True)
class _Failure:
    status: int
    description: str
    retry_after: int | None


class ApiError(Exception):
    """Raised by a method handler to answer ``{"ok": false, "error_code", "description"}``."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description


@dataclass
class _Chat:
    info: dict[str, Any]
    last_id: int = 0
    raw: dict[int, dict[str, Any]] = field(default_factory=dict)  # as Telegram shows them
    sent: dict[int, dict[str, Any]] = field(default_factory=dict)  # the bot's, for messages()


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's HTML parse mode: the plain text and its entities, or ApiError 400."""

    def fail(reason: str) -> ApiError:
        return ApiError(400, f"Bad Request: can't parse entities: {reason}")

    out: list[str] = []
    units, i = 0, 0
    stack: list[tuple[str, int, str]] = []
    entities: list[dict[str, Any]] = []
    while i < len(text):
        if text[i] == "<":
            at = len(text[:i].encode())
            m = _TAG.match(text, i)
            name, attrs = (m[2].lower(), m[3] or "") if m else ("", "")
            if m and m[1]:
                if not stack:
                    raise fail(f"Unexpected end tag at byte offset {at}")
                if stack[-1][0] != name:
                    raise fail(
                        f'Unmatched end tag at byte offset {at}, expected "</{stack[-1][0]}>",'
                        f' found "</{name}>"'
                    )
                tag, start, open_attrs = stack.pop()
                kind = HTML_TAGS[tag]
                href = _HREF.search(open_attrs)
                if tag == "blockquote" and "expandable" in open_attrs:
                    kind = "expandable_blockquote"
                entity = {"type": kind, "offset": start, "length": units - start}
                if kind == "text_link" and href:
                    entity["url"] = html.unescape(next(g for g in href.groups() if g is not None))
                if kind and units > start and (kind != "text_link" or href):
                    entities.append(entity)
            elif not m and re.match(r"</?[A-Za-z]", text[i : i + 2]) and ">" not in text[i:]:
                raise fail(f"Unclosed start tag at byte offset {at}")
            elif not m or name not in HTML_TAGS or (name == "span" and "tg-spoiler" not in attrs):
                raise fail(f'Unsupported start tag "{name}" at byte offset {at}')
            else:
                stack.append((name, units, attrs))
            i = m.end()
            continue
        ref = _CHAR_REF.match(text, i) if text[i] == "&" else None
        char = html.unescape(ref[0]) if ref else text[i]
        i = ref.end() if ref else i + 1
        out.append(char)
        units += utf16_len(char)
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return "".join(out), sorted(entities, key=lambda e: (e["offset"], -e["length"]))


def _render(text: Any, parse_mode: Any, limit: int, what: str) -> tuple[str, list[dict]]:
    """Plain text and entities of a text or caption, checked as Telegram checks them."""
    text = "" if text is None else str(text)
    if str(parse_mode or "").upper() == "HTML":
        plain, entities = parse_html(text)
    else:
        plain, entities = text, []
    if what == "text" and not plain.strip():
        raise ApiError(400, "Bad Request: message text is empty")
    if utf16_len(plain) > limit:
        too_long = "message is too long" if what == "text" else "message caption is too long"
        raise ApiError(400, f"Bad Request: {too_long}")
    return plain, entities


def _markup(value: Any) -> dict[str, Any] | None:
    """A decoded reply_markup, with inline buttons checked."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in value.get("inline_keyboard", []):
        for button in row:
            if not set(button) - {"text"}:
                raise ApiError(
                    400,
                    "Bad Request: can't parse inline keyboard button: Text buttons are "
                    "unallowed in the inline keyboard",
                )
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
    return value


def _user(user_id: int, username: str | None, first_name: str, language: str | None) -> dict:
    user = {"id": user_id, "is_bot": False, "first_name": first_name}
    user.update({"username": username} if username else {})
    user.update({"language_code": language} if language else {})
    return user


def _chat_type(chat_id: int) -> str:
    return "private" if chat_id > 0 else "supergroup" if str(chat_id)[:4] == "-100" else "group"


def _commands(text: str | None) -> list[dict[str, Any]]:
    """bot_command entities, as Telegram adds them to a user's text."""
    return [
        {"type": "bot_command", "offset": utf16_len(text[: m.start()]), "length": len(m[0])}
        for m in _COMMAND.finditer(text or "")
    ]


class FakeTelegram(LoopbackServer):
    """A local Bot API: ``with FakeTelegram() as fake: Bot(token, base_url=fake.base_url)``."""

    label = "Telegram"
    client_max_size = 64 * 1024 * 1024

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        bot_id: int = 123456,
        username: str = "rounds_test_bot",
        *,
        poll_cap: float = 2.0,
    ) -> None:
        self.token, self.bot_id, self.username = token, bot_id, username
        self.poll_cap = poll_cap  # longest a getUpdates waits, whatever its timeout
        self.me = {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Rounds",
            "username": username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self._lock = threading.RLock()
        super().__init__()
        self.reset()
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "getMe": lambda args: self.me,
            "getUpdates": lambda args: None,  # async, see _get_updates
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "answerCallbackQuery": self._answer_callback_query,
            "getFile": self._get_file,
            "sendPhoto": self._send_photo,
        }
        self._canonical = {name.lower(): name for name in self._handlers}

    # ----------------------------------------------------------------- lifecycle

    def reset(self) -> None:
        """Forget all calls, chats, updates, files, answers, commands and failures."""
        with self._lock:
            self._calls: list[Call] = []
            self._chats: dict[int, _Chat] = {}
            self._pending: deque[dict[str, Any]] = deque()
            self._update_ids = itertools.count(1)
            self._ids = itertools.count(1)
            self._files: dict[str, dict[str, Any]] = {}
            self._contents: dict[str, bytes] = {}
            self._open_queries: set[str] = set()
            self._answers: list[dict[str, Any]] = []
            self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
            self._webhook: dict[str, Any] = {"url": "", "secret_token": None}
            self._failures: dict[str, deque[_Failure]] = {}
            self._down = False
            self._poller: object | None = None

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)

    @property
    def base_url(self) -> str:
        """What ``Bot(base_url=...)`` needs: ``http://127.0.0.1:PORT/bot`` (token appended)."""
        return self.url + "/bot"

    @property
    def base_file_url(self) -> str:
        """What ``Bot(base_file_url=...)`` needs: ``http://127.0.0.1:PORT/file/bot``."""
        return self.url + "/file/bot"

    def bot(self, **kwargs: Any):
        """A real ``telegram.Bot`` wired to this server (use it as ``async with``)."""
        from telegram import Bot

        kwargs.setdefault("token", self.token)
        return Bot(base_url=self.base_url, base_file_url=self.base_file_url, **kwargs)

    # ------------------------------------------------------------ failure control

    def fail(
        self,
        method: str,
        status: int | None = None,
        retry_after: int | None = None,
        times: int = 1,
        description: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail, without changing state.

        No status (or 429): HTTP 429 with ``parameters.retry_after`` (default 1). Another
        status answers it with ``{"ok": false, "error_code", "description"}``, the description
        defaulting to the HTTP reason ("Internal Server Error"; 400: "Bad Request").
        ``method`` may be "download" for file downloads.
        """
        status = status or 429
        retry = (retry_after or 1) if status == 429 else None
        if description is None:
            description = f"Too Many Requests: retry after {retry}" if retry else None
            description = description or HTTPStatus(status).phrase
        with self._lock:
            queue = self._failures.setdefault(method, deque())
            queue.extend([_Failure(status, description, retry)] * times)

    def go_down(self) -> None:
        """A Telegram outage: every request answers 502 Bad Gateway (an HTML page)."""
        with self._lock:
            self._down = True

    def come_back(self) -> None:
        with self._lock:
            self._down = False

    # ----------------------------------------------------------- feeding updates

    def push(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates (an update_id is added if missing)."""
        with self._lock:
            update.setdefault("update_id", next(self._update_ids))
            self._pending.append(copy.deepcopy(update))
        return update

    def message_json(
        self,
        chat_id: int,
        user_id: int,
        text: str | None = None,
        chat_type: str | None = None,
        username: str | None = None,
        first_name: str = "Test",
        photo: list[dict[str, Any]] | None = None,
        caption: str | None = None,
        sticker: bool = False,
        voice: bool = False,
        document: dict[str, Any] | bytes | None = None,
        *,
        reply_to: int | None = None,
        language_code: str | None = None,
        title: str | None = None,
        edit_of: int | None = None,
    ) -> dict[str, Any]:
        """A ``message`` update from a user (not queued), with bot_command entities.

        chat_type defaults to "private" for a positive chat id, else "supergroup" for ids
        starting with -100 and "group" for other negative ones. ``sticker``, ``voice`` and
        ``document`` (bytes, or a Document dict) come with downloadable files. ``edit_of``
        makes it an ``edited_message`` update of that earlier message instead.
        """
        user = _user(user_id, username, first_name, language_code)
        chat_type = chat_type or _chat_type(chat_id)
        info: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            info.update({k: v for k, v in user.items() if k in ("first_name", "username")})
        else:
            info["title"] = title or f"Test group {abs(chat_id)}"
        now = int(time.time())
        message: dict[str, Any] = {"from": user, "chat": info, "date": now}
        if text is not None:
            message["text"] = text
            message.update({"entities": _commands(text)} if _commands(text) else {})
        if caption is not None:
            message["caption"] = caption
            message.update({"caption_entities": _commands(caption)} if _commands(caption) else {})
        with self._lock:
            if photo is not None:
                message["photo"] = photo
            if sticker:
                message["sticker"] = self._media("stickers", ".webp", b"RIFF", **STICKER)
            if voice:
                message["voice"] = self._media("voice", ".oga", b"OggS", **VOICE)
            if isinstance(document, bytes):
                message["document"] = self._media("documents", ".bin", document, **DOCUMENT)
            elif document is not None:
                message["document"] = {"file_id": "doc", "file_unique_id": "u-doc", **document}
            chat = self._chat_for(chat_id, info)
            if edit_of is None:
                chat.last_id += 1
                message_id, kind = chat.last_id, "message"
            else:
                message_id, kind = edit_of, "edited_message"
                message.update(date=chat.raw.get(edit_of, message)["date"], edit_date=now)
            message = {"message_id": message_id, **message}
            if reply_to is not None and reply_to in chat.raw:
                message["reply_to_message"] = self._quoted(chat, reply_to)
            chat.raw[message_id] = message
            return {"update_id": next(self._update_ids), kind: copy.deepcopy(message)}

    def push_message(
        self, chat_id: int, user_id: int, text: str | None = None, *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        """Queue ``message_json(...)`` (same arguments); returns the update."""
        return self.push(self.message_json(chat_id, user_id, text, *args, **kwargs))

    def edited_message_json(
        self, chat_id: int, user_id: int, message_id: int, text: str, **kwargs: Any
    ) -> dict[str, Any]:
        """An ``edited_message`` update: a user's earlier message with new text."""
        return self.message_json(chat_id, user_id, text, edit_of=message_id, **kwargs)

    def push_edited_message(
        self, chat_id: int, user_id: int, message_id: int, text: str, **kwargs: Any
    ) -> dict[str, Any]:
        return self.push(self.edited_message_json(chat_id, user_id, message_id, text, **kwargs))

    def callback_json(
        self,
        chat_id: int,
        user_id: int,
        message_id: int,
        data: str,
        *,
        username: str | None = None,
        first_name: str = "Test",
        language_code: str | None = None,
    ) -> dict[str, Any]:
        """A ``callback_query`` update: a user pressed a button on ``message_id`` (not queued).

        The query's message is the fake's current copy of that message when known.
        """
        user = _user(user_id, username, first_name, language_code)
        with self._lock:
            chat = self._chat_for(chat_id)
            message = copy.deepcopy(chat.raw.get(message_id)) or {
                "message_id": message_id,
                "from": self.me,
                "chat": chat.info,
                "date": int(time.time()),
                "text": "",
            }
            query_id = str(4_000_000_000_000_000 + next(self._ids))
            self._open_queries.add(query_id)
            query = {
                "id": query_id,
                "from": user,
                "message": message,
                "chat_instance": str(-1_000_000_000_000 - abs(chat_id)),
                "data": data,
            }
            return {"update_id": next(self._update_ids), "callback_query": query}

    def push_callback(
        self, chat_id: int, user_id: int, message_id: int, data: str, **kwargs: Any
    ) -> dict[str, Any]:
        return self.push(self.callback_json(chat_id, user_id, message_id, data, **kwargs))

    def add_file(self, file_id: str, content: bytes, file_path: str | None = None) -> None:
        """Make ``content`` downloadable: getFile(file_id), then GET its file_path."""
        with self._lock:
            n = next(self._ids)
            file_path = file_path or f"tg-fake/documents/file_{n}"
            self._files[file_id] = {
                "file_id": file_id,
                "file_unique_id": f"u-{file_id}",
                "file_size": len(content),
                "file_path": file_path,
            }
            self._contents[file_path] = bytes(content)

    def photo_sizes(self, content: bytes) -> list[dict[str, Any]]:
        """Registers ``content`` as a photo; its PhotoSize list, smallest first."""
        return [
            self._media("photos", ".jpg", content, width=width, height=height)
            for width, height in ((320, 240), (1280, 960))
        ]

    def photo_json(
        self, chat_id: int, user_id: int, content: bytes, caption: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        return self.message_json(
            chat_id, user_id, photo=self.photo_sizes(content), caption=caption, **kwargs
        )

    def push_photo(
        self, chat_id: int, user_id: int, content: bytes, caption: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Queue a message whose ``photo`` (two sizes) downloads as ``content``."""
        return self.push(self.photo_json(chat_id, user_id, content, caption, **kwargs))

    def _media(self, folder: str, ext: str, content: bytes, **extra: Any) -> dict[str, Any]:
        with self._lock:
            n = next(self._ids)
            file_id = f"{folder[:5]}-{n}"
            self.add_file(file_id, content, f"tg-fake/{folder}/file_{n}{ext}")
            return self._file_object(file_id) | extra

    def _file_object(self, file_id: str) -> dict[str, Any]:
        """file_id, file_unique_id and file_size of a registered file, as in a PhotoSize."""
        known = self._files[file_id]
        return {k: known[k] for k in ("file_id", "file_unique_id", "file_size")}

    # --------------------------------------------------------------- inspection

    def messages(self, chat_id: int) -> list[dict[str, Any]]:
        """The bot's current messages (after edits) in a chat, in order.

        Each is ``{"message_id", "text", "parse_mode", "reply_markup", "reply_to", "caption",
        "photo", "edits"}``: text/caption as sent (HTML included), reply_markup decoded,
        photo the uploaded bytes or the file_id sent, None where absent.
        """
        with self._lock:
            chat = self._chats.get(chat_id)
            return copy.deepcopy(list(chat.sent.values())) if chat else []

    def callback_answers(self) -> list[dict[str, Any]]:
        """``{"callback_query_id", "text", "show_alert", "url", "cache_time"}`` per answer."""
        with self._lock:
            return copy.deepcopy(self._answers)

    def commands(self, scope: str | dict[str, Any] = "default") -> dict[str, list[dict]]:
        """What setMyCommands stored for a scope, by language_code ("" when none given)."""
        key = json.dumps({"type": scope} if isinstance(scope, str) else scope, sort_keys=True)
        with self._lock:
            return {
                lang: copy.deepcopy(cmds) for (s, lang), cmds in self._commands.items() if s == key
            }

    def webhook(self) -> dict[str, Any]:
        """``{"url", "secret_token", ...}`` as last set; url "" when there is none."""
        with self._lock:
            return copy.deepcopy(self._webhook)

    def pending(self) -> list[dict[str, Any]]:
        """Queued updates that getUpdates has not yet had confirmed by an offset."""
        with self._lock:
            return copy.deepcopy(list(self._pending))

    def sent_times(
        self, chat_id: int | str, methods: Iterable[str] = ("sendMessage", "editMessageText")
    ) -> list[float]:
        """time.monotonic() arrival stamps of the successful ``methods`` calls to a chat."""
        methods = set(methods)
        return [
            c.at
            for c in self.calls
            if c.method in methods and not c.failed and str(c.args.get("chat_id")) == str(chat_id)
        ]

    def describe(self, call: Call) -> str:
        failed = f"FAILED {call.status} {call.description} " if call.failed else ""
        return f"  {call.method} {failed}{call.args}"

    # ------------------------------------------------------------------- server

    async def _api(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        name = request.match_info["method"]
        method = self._canonical.get(name.lower(), name)
        try:
            args = await _read_args(request)
        except ValueError:
            return self._error(Call(method, {}, at, 400, "Bad Request: can't parse JSON"))
        if self._down:
            return self._outage(Call(method, args, at, 502, "Bad Gateway"))
        token = request.match_info["token"]
        if token != self.token:
            bad = (401, "Unauthorized") if _TOKEN_SHAPE.fullmatch(token) else (404, "Not Found")
            return self._error(Call(method, args, at, *bad))
        if method not in self._handlers:
            return self._error(Call(method, args, at, 404, "Not Found"))
        with self._lock:
            failure = self._next_failure(method)
        if failure is not None:
            call = Call(method, args, at, failure.status, failure.description)
            return self._error(call, failure.retry_after)
        try:
            if method == "getUpdates":
                result = await self._get_updates(args, request)
                self._record(Call(method, args, at))
            else:
                with self._lock:
                    result = self._handlers[method](args)
                    self._calls.append(Call(method, args, at))
        except ApiError as e:
            return self._error(Call(method, args, at, e.status, e.description))
        return web.json_response({"ok": True, "result": result})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        path = request.match_info["path"]
        call = Call("download", {"file_path": path}, at)
        if self._down:
            return self._outage(Call(call.method, call.args, at, 502, "Bad Gateway"))
        if request.match_info["token"] != self.token:
            return self._error(Call(call.method, call.args, at, 401, "Unauthorized"))
        with self._lock:
            failure = self._next_failure("download")
            content = self._contents.get(path)
        if failure is not None:
            failed = Call(call.method, call.args, at, failure.status, failure.description)
            return self._error(failed, failure.retry_after)
        if content is None:
            return self._error(Call(call.method, call.args, at, 404, "Not Found"))
        self._record(call)
        return web.Response(body=content, content_type="application/octet-stream")

    def _next_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        return queue.popleft() if queue else None

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def _error(self, call: Call, retry_after: int | None = None) -> web.StreamResponse:
        self._record(call)
        body: dict[str, Any] = {
            "ok": False,
            "error_code": call.status,
            "description": call.description,
        }
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=call.status)

    def _outage(self, call: Call) -> web.StreamResponse:
        self._record(call)
        return web.Response(status=502, text=OUTAGE_PAGE, content_type="text/html")

    # --------------------------------------------------------- method handlers
    # Called with the lock held (but _get_updates); raise ApiError for ``ok: false``.
    # A client that hung up on a long poll (PTB cancelling it) ends it quietly, so that
    # only a competing poller that is still listening gets the 409 Telegram sends.

    async def _get_updates(self, args: dict[str, Any], request: web.Request) -> list[dict]:
        offset = int(args.get("offset") or 0)
        limit = max(1, min(int(args.get("limit") or 100), 100))
        deadline = time.monotonic() + min(float(args.get("timeout") or 0), self.poll_cap)
        me = object()
        with self._lock:
            if self._webhook["url"]:
                raise ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; use "
                    "deleteWebhook to delete the webhook first",
                )
            if offset > 0:  # confirms (forgets) every update below offset
                while self._pending and self._pending[0]["update_id"] < offset:
                    self._pending.popleft()
            elif offset < 0:  # the last -offset updates; earlier ones are forgotten
                self._pending = deque(list(self._pending)[offset:])
            self._poller = me
        while True:
            with self._lock:
                gone = request.transport is None or request.transport.is_closing()
                if not gone and self._poller is not me:
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that "
                        "only one bot instance is running",
                    )
                if self._pending or gone or time.monotonic() >= deadline:
                    return copy.deepcopy(list(self._pending)[:limit])
            await asyncio.sleep(0.01)

    def _delete_webhook(self, args: dict[str, Any]) -> bool:
        self._webhook = {"url": "", "secret_token": None}
        if args.get("drop_pending_updates"):
            self._pending.clear()
        return True

    def _set_webhook(self, args: dict[str, Any]) -> bool:
        secret = args.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if args.get("drop_pending_updates"):
            self._pending.clear()
        self._webhook = {
            "url": str(args.get("url") or ""),
            "secret_token": secret,
            "allowed_updates": args.get("allowed_updates"),
            "max_connections": args.get("max_connections"),
        }
        return True

    def _get_webhook_info(self, args: dict[str, Any]) -> dict[str, Any]:
        info = {
            "url": self._webhook["url"],
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self._webhook.get("allowed_updates"):
            info["allowed_updates"] = self._webhook["allowed_updates"]
        return info

    @staticmethod
    def _scope_key(args: dict[str, Any]) -> tuple[str, str]:
        scope = args.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(args.get("language_code") or "")

    def _set_my_commands(self, args: dict[str, Any]) -> bool:
        commands = args.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not str(command.get("description") or "").strip():
                raise ApiError(400, "Bad Request: command description must be non-empty")
            if len(str(command["description"])) > 256:
                raise ApiError(400, "Bad Request: command description is too long")
        self._commands[self._scope_key(args)] = commands
        return True

    def _get_my_commands(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self._commands.get(self._scope_key(args), [])

    def _delete_my_commands(self, args: dict[str, Any]) -> bool:
        self._commands.pop(self._scope_key(args), None)
        return True

    def _chat_for(self, chat_id: Any, info: dict[str, Any] | None = None) -> _Chat:
        """The chat (created if new); ``info`` from a user's update refreshes its description."""
        if isinstance(chat_id, str) and re.fullmatch(r"-?[0-9]+", chat_id):
            chat_id = int(chat_id)
        if not isinstance(chat_id, int) or isinstance(chat_id, bool) or chat_id == 0:
            raise ApiError(400, "Bad Request: chat not found")
        chat = self._chats.get(chat_id)
        if chat is None:
            name = {"first_name": "Test"} if chat_id > 0 else {"title": f"Test group {-chat_id}"}
            info = info or {"id": chat_id, "type": _chat_type(chat_id), **name}
            chat = self._chats[chat_id] = _Chat(info)
        elif info:
            chat.info = info
        return chat

    @staticmethod
    def _quoted(chat: _Chat, message_id: int) -> dict[str, Any]:
        quoted = copy.deepcopy(chat.raw[message_id])
        quoted.pop("reply_to_message", None)
        return quoted

    def _reply_to(self, chat: _Chat, args: dict[str, Any]) -> int | None:
        params = args.get("reply_parameters") or {}
        reply_to = params.get("message_id", args.get("reply_to_message_id"))
        if reply_to is None:
            return None
        if int(reply_to) not in chat.raw:
            if params.get("allow_sending_without_reply"):
                return None
            raise ApiError(400, "Bad Request: message to be replied not found")
        return int(reply_to)

    def _prepare(self, args: dict[str, Any]) -> tuple[_Chat, dict | None, int | None]:
        chat = self._chat_for(args.get("chat_id"))
        return chat, _markup(args.get("reply_markup")), self._reply_to(chat, args)

    def _new_message(
        self, args: dict[str, Any], message: dict[str, Any], sent: dict[str, Any]
    ) -> dict[str, Any]:
        chat, markup, reply_to = self._prepare(args)
        chat.last_id += 1
        raw = {
            "message_id": chat.last_id,
            "from": self.me,
            "chat": chat.info,
            "date": int(time.time()),
            **message,
        }
        if reply_to is not None:
            raw["reply_to_message"] = self._quoted(chat, reply_to)
        if markup and "inline_keyboard" in markup:  # Telegram echoes only inline keyboards
            raw["reply_markup"] = markup
        chat.raw[chat.last_id] = raw
        chat.sent[chat.last_id] = {
            "message_id": chat.last_id,
            "text": None,
            "parse_mode": args.get("parse_mode"),
            "reply_markup": markup,
            "reply_to": reply_to,
            "caption": None,
            "photo": None,
            "edits": 0,
            **sent,
        }
        return copy.deepcopy(raw)

    def _send_message(self, args: dict[str, Any]) -> dict[str, Any]:
        plain, entities = _render(args.get("text"), args.get("parse_mode"), MAX_TEXT, "text")
        message = {"text": plain, **({"entities": entities} if entities else {})}
        return self._new_message(args, message, {"text": args.get("text")})

    def _send_photo(self, args: dict[str, Any]) -> dict[str, Any]:
        caption, photo = args.get("caption"), args.get("photo")
        plain, entities = _render(caption, args.get("parse_mode"), MAX_CAPTION, "caption")
        self._prepare(args)  # fail before registering any file
        if isinstance(photo, bytes):
            sizes = self.photo_sizes(photo)
        elif isinstance(photo, str) and photo in self._files:
            sizes = [self._file_object(photo) | {"width": 1280, "height": 960}]
        else:
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        message: dict[str, Any] = {"photo": sizes}
        message.update({"caption": plain} if caption else {})
        message.update({"caption_entities": entities} if entities else {})
        return self._new_message(args, message, {"caption": caption, "photo": photo})

    def _editable(self, args: dict[str, Any]) -> tuple[_Chat, int]:
        if args.get("inline_message_id"):
            raise ApiError(400, "Bad Request: MESSAGE_ID_INVALID")
        chat = self._chats.get(int(args.get("chat_id") or 0))
        message_id = int(args.get("message_id") or 0)
        if chat is None or message_id not in chat.raw:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message_id not in chat.sent:
            raise ApiError(400, "Bad Request: message can't be edited")
        return chat, message_id

    def _apply_edit(
        self, chat: _Chat, message_id: int, changes: dict[str, Any], sent: dict[str, Any]
    ) -> dict[str, Any]:
        raw = chat.raw[message_id]
        if all(raw.get(k) == v for k, v in changes.items()):
            raise ApiError(400, NOT_MODIFIED)
        for key, value in changes.items():
            if value:
                raw[key] = value
            else:
                raw.pop(key, None)
        raw["edit_date"] = int(time.time())
        chat.sent[message_id].update(sent, edits=chat.sent[message_id]["edits"] + 1)
        return copy.deepcopy(raw)

    def _edit_message_text(self, args: dict[str, Any]) -> dict[str, Any]:
        chat, message_id = self._editable(args)
        plain, entities = _render(args.get("text"), args.get("parse_mode"), MAX_TEXT, "text")
        if "text" not in chat.raw[message_id]:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        markup = _markup(args.get("reply_markup"))  # omitted: the keyboard goes
        changes = {"text": plain, "entities": entities or None, "reply_markup": markup}
        sent = {
            "text": args.get("text"),
            "parse_mode": args.get("parse_mode"),
            "reply_markup": markup,
        }
        return self._apply_edit(chat, message_id, changes, sent)

    def _edit_message_reply_markup(self, args: dict[str, Any]) -> dict[str, Any]:
        chat, message_id = self._editable(args)
        markup = _markup(args.get("reply_markup"))
        return self._apply_edit(
            chat, message_id, {"reply_markup": markup}, {"reply_markup": markup}
        )

    def _answer_callback_query(self, args: dict[str, Any]) -> bool:
        query_id = str(args.get("callback_query_id") or "")
        if query_id not in self._open_queries:
            raise ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is "
                "invalid",
            )
        if len(str(args.get("text") or "")) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self._open_queries.discard(query_id)
        fields = ("callback_query_id", "text", "show_alert", "url", "cache_time")
        self._answers.append({k: args.get(k) for k in fields})
        return True

    def _get_file(self, args: dict[str, Any]) -> dict[str, Any]:
        found = self._files.get(str(args.get("file_id") or ""))
        if found is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        return dict(found)


async def _read_args(request: web.Request) -> dict[str, Any]:
    """Query string plus body (JSON, a form, or multipart with uploads as bytes), decoded.

    Raises ValueError for a malformed JSON body.
    """
    args: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        text = await request.text()
        body = json.loads(text) if text else {}
        if not isinstance(body, dict):
            raise ValueError("JSON body is not an object")
        args.update(body)
    elif request.can_read_body:
        for key, value in (await request.post()).items():
            args[key] = value.file.read() if isinstance(value, web.FileField) else value
    for key, value in args.items():
        if isinstance(value, str) and key not in STRING_FIELDS:
            with contextlib.suppress(ValueError):  # e.g. chat_id "@channel" stays a string
                args[key] = json.loads(value)
    return args
