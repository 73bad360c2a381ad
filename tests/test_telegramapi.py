"""The fake Telegram Bot API in tests/telegramapi.py, driven by the real python-telegram-bot."""

from __future__ import annotations

import asyncio
import datetime as dtm
import threading
import time

import pytest
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllGroupChats,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.ext import ApplicationBuilder, CallbackQueryHandler, CommandHandler
from telegram.warnings import PTBDeprecationWarning

from tests.telegramapi import FakeTelegram

TOKEN = "123456:TEST-TOKEN"
CHAT, USER = 42, 42
PHOTO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
KEYBOARD = InlineKeyboardMarkup([[InlineKeyboardButton("Take", callback_data="take:INC-1")]])
KEYBOARD_JSON = {"inline_keyboard": [[{"text": "Take", "callback_data": "take:INC-1"}]]}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    # httpx routes 127.0.0.1 through HTTP(S)_PROXY/ALL_PROXY unless NO_PROXY covers it.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PTB_TIMEDELTA", raising=False)
    with FakeTelegram(TOKEN) as fake:
        yield fake


def run(fake: FakeTelegram, scenario, **bot_kwargs):
    """Run ``await scenario(bot)`` with a real Bot, initialised (getMe) and shut down."""

    async def main():
        async with fake.bot(**bot_kwargs) as bot:
            return await scenario(bot)

    return asyncio.run(main())


def test_urls_and_get_me(fake: FakeTelegram):
    async def scenario(bot: Bot):
        return bot.base_url, bot.base_file_url, await bot.get_me()

    base_url, base_file_url, me = run(fake, scenario)
    # Bot appends the token to both base URLs itself.
    assert base_url == f"{fake.base_url}{TOKEN}" == f"http://127.0.0.1:{fake._port}/bot{TOKEN}"
    assert base_file_url == f"{fake.base_file_url}{TOKEN}"
    assert (me.id, me.username, me.is_bot) == (123456, "rounds_test_bot", True)
    # `async with bot` already called getMe once (Bot.initialize).
    assert [c.method for c in fake.calls] == ["getMe", "getMe"]


def test_send_reply_and_edit_with_keyboard(fake: FakeTelegram):
    async def scenario(bot: Bot):
        first = await bot.send_message(
            CHAT, "<b>Pump 3</b> down &amp; out", parse_mode=ParseMode.HTML, reply_markup=KEYBOARD
        )
        reply = await bot.send_message(CHAT, "on it", reply_to_message_id=first.message_id)
        other = await bot.send_message(7, "elsewhere")
        # No reply_markup on an edit removes the inline keyboard, as on Telegram.
        edited = await bot.edit_message_text("Pump 3 taken", CHAT, first.message_id)
        with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
            await bot.edit_message_text("Pump 3 taken", CHAT, first.message_id)
        with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
            await bot.edit_message_text("nope", CHAT, 99)
        with pytest.raises(BadRequest, match=r"(?i)message to be replied not found"):
            await bot.send_message(CHAT, "x", reply_to_message_id=98)
        marked = await bot.edit_message_reply_markup(CHAT, first.message_id, reply_markup=KEYBOARD)
        return first, reply, other, edited, marked

    first, reply, other, edited, marked = run(fake, scenario)
    # The returned Message has Telegram's plain text plus entities, so text_html round-trips.
    assert (first.message_id, first.chat.id, first.chat.type) == (1, CHAT, "private")
    assert first.text == "Pump 3 down & out"
    assert first.text_html == "<b>Pump 3</b> down &amp; out"
    assert first.reply_markup.inline_keyboard[0][0].callback_data == "take:INC-1"
    assert first.from_user.username == "rounds_test_bot"
    assert first.date.tzinfo is not None
    assert (reply.message_id, reply.reply_to_message.message_id) == (2, 1)
    assert other.message_id == 1  # message ids count per chat
    assert (edited.text, edited.reply_markup, edited.edit_date is not None) == (
        "Pump 3 taken",
        None,
        True,
    )
    assert marked.reply_markup == KEYBOARD
    # PTB 22 sends reply_to_message_id as reply_parameters; nested objects arrive as JSON.
    sent = fake.calls_to("sendMessage")
    assert sent[0].args["reply_markup"] == KEYBOARD_JSON
    assert sent[1].args["reply_parameters"] == {"message_id": 1}
    assert [m["text"] for m in fake.messages(CHAT)] == ["Pump 3 taken", "on it"]
    assert fake.messages(CHAT)[0] == {
        "message_id": 1,
        "text": "Pump 3 taken",
        "parse_mode": None,
        "reply_markup": KEYBOARD_JSON,
        "reply_to": None,
        "caption": None,
        "photo": None,
        "edits": 2,
    }
    assert fake.messages(CHAT)[1]["reply_to"] == 1
    assert [c.status for c in fake.calls if c.failed] == [400, 400, 400]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("a < b", 'unsupported start tag "" at byte offset 2'),
        ("<br>line", 'unsupported start tag "br"'),
        ("<b>bold", 'can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "unexpected end tag at byte offset 1"),
        ("see <b", "unclosed start tag at byte offset 4"),
        ("<b>" + "é" * 4097 + "</b>", "message is too long"),
        ("<b> </b>", "message text is empty"),
    ],
)
def test_html_is_checked_like_telegram(fake: FakeTelegram, text: str, error: str):
    async def scenario(bot: Bot):
        with pytest.raises(BadRequest) as caught:
            await bot.send_message(CHAT, text, parse_mode=ParseMode.HTML)
        return caught.value

    caught = run(fake, scenario)
    # PTB drops "Bad Request: " and capitalize()s the rest (lowercasing the tag details).
    assert error in caught.message.lower()
    assert caught.message[0].isupper()
    assert fake.messages(CHAT) == []
    assert fake.calls_to("sendMessage")[0].failed


def test_html_limits_count_the_parsed_text(fake: FakeTelegram):
    text = '<a href="https://x.test/?a=1&amp;b=2">' + "x" * 4096 + "</a>"

    async def scenario(bot: Bot):
        sent = await bot.send_message(CHAT, text, parse_mode=ParseMode.HTML)
        with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
            button = InlineKeyboardButton("Long", callback_data="x" * 65)
            await bot.send_message(CHAT, "x", reply_markup=InlineKeyboardMarkup([[button]]))
        return sent

    sent = run(fake, scenario)
    assert sent.entities[0].url == "https://x.test/?a=1&b=2"
    assert fake.messages(CHAT)[0]["text"] == text


def test_updates_offsets_and_callbacks(fake: FakeTelegram):
    async def scenario(bot: Bot):
        sent = await bot.send_message(CHAT, "Pump 3 down", reply_markup=KEYBOARD)
        fake.push_message(CHAT, USER, "/take@rounds_test_bot INC-1", username="wang")
        fake.push_callback(CHAT, USER, sent.message_id, "take:INC-1", first_name="Wang")
        fake.push_message(-1001234, USER, "hi all", title="IT ops")
        first = await bot.get_updates()
        again = await bot.get_updates()  # nothing confirmed yet: the same three
        rest = await bot.get_updates(offset=first[1].update_id)  # confirms the first
        none = await bot.get_updates(offset=first[-1].update_id + 1, timeout=0)
        query = first[1].callback_query
        await query.answer("Taken", show_alert=True)
        with pytest.raises(BadRequest, match=r"(?i)query is too old"):
            await query.answer("twice")
        return first, again, rest, none

    first, again, rest, none = run(fake, scenario)
    assert [u.update_id for u in again] == [u.update_id for u in first]
    assert [u.update_id for u in rest] == [u.update_id for u in first[1:]]
    assert none == () and fake.pending() == []
    assert all(isinstance(u, Update) for u in first)

    message = first[0].message
    assert (message.chat.id, message.chat.type, message.from_user.id) == (CHAT, "private", USER)
    assert message.from_user.username == "wang"
    assert message.message_id == 2  # after the bot's message 1 in that chat
    assert message.text == "/take@rounds_test_bot INC-1"
    assert message.parse_entities() == {message.entities[0]: "/take@rounds_test_bot"}
    assert message.entities[0].type == "bot_command"

    query = first[1].callback_query
    assert (query.data, query.from_user.id, query.from_user.first_name) == (
        "take:INC-1",
        USER,
        "Wang",
    )
    assert (query.message.message_id, query.message.text) == (1, "Pump 3 down")
    assert query.message.reply_markup == KEYBOARD

    group = first[2].message
    assert (group.chat.id, group.chat.type, group.chat.title) == (-1001234, "supergroup", "IT ops")
    assert first[2].effective_user.id == USER
    assert fake.callback_answers() == [
        {
            "callback_query_id": query.id,
            "text": "Taken",
            "show_alert": True,
            "url": None,
            "cache_time": None,
        }
    ]


def test_other_update_kinds_parse(fake: FakeTelegram):
    user_message = fake.message_json(CHAT, USER, "Pump 3 is down")
    kinds = [
        fake.message_json(CHAT, USER, sticker=True),
        fake.message_json(CHAT, USER, voice=True),
        fake.message_json(CHAT, USER, document=b"%PDF-1.4", caption="report"),
        fake.edited_message_json(CHAT, USER, user_message["message"]["message_id"], "Pump 4"),
        fake.message_json(CHAT, USER, "me too", reply_to=user_message["message"]["message_id"]),
    ]
    assert fake.pending() == []  # *_json builds updates without queueing them

    async def scenario(bot: Bot):
        updates = [Update.de_json(u, bot) for u in [user_message, *kinds]]
        file = await bot.get_file(updates[3].message.document)
        return updates, await file.download_as_bytearray()

    updates, document = run(fake, scenario)
    assert [u.update_id for u in updates] == sorted(u.update_id for u in updates)
    assert updates[1].message.sticker.emoji and updates[2].message.voice.mime_type == "audio/ogg"
    assert updates[3].message.caption == "report" and document == b"%PDF-1.4"
    edited = updates[4].edited_message
    assert (edited.message_id, edited.text, edited.edit_date is not None) == (1, "Pump 4", True)
    assert updates[5].message.reply_to_message.text == "Pump 4"


def test_long_polling(fake: FakeTelegram):
    async def scenario(bot: Bot):
        asyncio.get_running_loop().call_later(0.3, fake.push_message, CHAT, USER, "late")
        started = time.monotonic()
        woken = await bot.get_updates(timeout=5)
        waited = time.monotonic() - started
        started = time.monotonic()
        empty = await bot.get_updates(offset=woken[0].update_id + 1, timeout=1)
        return woken, waited, empty, time.monotonic() - started

    woken, waited, empty, idle = run(fake, scenario)
    assert woken[0].message.text == "late" and 0.25 < waited < 2
    assert empty == () and 0.9 < idle < 1.9


def test_long_poll_is_capped_and_a_newer_poll_wins(fake: FakeTelegram):
    fake.poll_cap = 0.3

    async def scenario(bot: Bot):
        started = time.monotonic()
        assert await bot.get_updates(timeout=30) == ()
        capped = time.monotonic() - started
        fake.poll_cap = 5
        # One Bot polls through a single connection; a second instance is what competes.
        async with fake.bot() as second:
            older = asyncio.create_task(bot.get_updates(timeout=5))
            await asyncio.sleep(0.2)
            newer = asyncio.create_task(second.get_updates(timeout=5))
            with pytest.raises(Conflict, match="terminated by other getUpdates"):
                await older
            fake.push_message(CHAT, USER, "hello")
            return capped, await newer

    capped, updates = run(fake, scenario)
    assert capped < 1 and updates[0].message.text == "hello"


def test_set_my_commands(fake: FakeTelegram):
    english = [BotCommand("new", "Report an incident"), BotCommand("mine", "My incidents")]
    chinese = [BotCommand("new", "报修"), BotCommand("mine", "我的工单")]

    async def scenario(bot: Bot):
        await bot.set_my_commands(english)
        await bot.set_my_commands(chinese, language_code="zh")
        await bot.set_my_commands(english[:1], scope=BotCommandScopeAllGroupChats())
        with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
            await bot.set_my_commands([BotCommand("New-Thing", "bad")])
        return await bot.get_my_commands(language_code="zh")

    assert run(fake, scenario) == tuple(chinese)
    assert fake.commands() == {
        "": [
            {"command": "new", "description": "Report an incident"},
            {"command": "mine", "description": "My incidents"},
        ],
        "zh": [
            {"command": "new", "description": "报修"},
            {"command": "mine", "description": "我的工单"},
        ],
    }
    assert fake.commands("all_group_chats") == {"": [english[0].to_dict()]}


def test_photos_and_file_downloads(fake: FakeTelegram, tmp_path):
    update = fake.push_photo(CHAT, USER, PHOTO, caption="pump 3")

    async def scenario(bot: Bot):
        (received,) = await bot.get_updates()
        photo = received.message.photo[-1]
        file = await photo.get_file()
        data = await file.download_as_bytearray()
        path = await file.download_to_drive(tmp_path / "photo.jpg")
        sent = await bot.send_photo(CHAT, PHOTO[:20], caption="<i>seen</i>", parse_mode="HTML")
        resent = await bot.send_photo(CHAT, photo.file_id)
        again = await (await sent.photo[-1].get_file()).download_as_bytearray()
        fake.fail("download", status=500)
        with pytest.raises(NetworkError):
            await file.download_as_bytearray()
        with pytest.raises(BadRequest, match=r"(?i)invalid file_id"):
            await bot.get_file("no-such-file")
        return received, file, data, path, sent, resent, again

    received, file, data, path, sent, resent, again = run(fake, scenario)
    sizes = update["message"]["photo"]
    assert [(p.width, p.file_id) for p in received.message.photo] == [
        (320, sizes[0]["file_id"]),
        (1280, sizes[1]["file_id"]),
    ]
    assert received.message.caption == "pump 3" and received.message.photo[-1].file_size == 1032
    # get_file turns the relative file_path into base_file_url + token + "/" + path.
    assert file.file_path.startswith(f"{fake.base_file_url}{TOKEN}/tg-fake/photos/")
    assert bytes(data) == PHOTO and path.read_bytes() == PHOTO
    assert sent.caption == "seen" and sent.caption_html == "<i>seen</i>"
    assert resent.photo[-1].file_id == received.message.photo[-1].file_id
    assert bytes(again) == PHOTO[:20]
    assert [(m["photo"], m["caption"]) for m in fake.messages(CHAT)] == [
        (PHOTO[:20], "<i>seen</i>"),
        (received.message.photo[-1].file_id, None),
    ]
    # The upload was multipart; the fake hands the bytes over in the call's args.
    assert fake.calls_to("sendPhoto")[0].args["photo"] == PHOTO[:20]


def test_retry_after_is_an_int_or_a_timedelta(fake: FakeTelegram, monkeypatch):
    fake.fail("sendMessage", retry_after=7)

    async def scenario(bot: Bot):
        with pytest.warns(PTBDeprecationWarning), pytest.raises(RetryAfter) as caught:
            await bot.send_message(CHAT, "first")
        await bot.send_message(CHAT, "second")  # only the next call failed
        return caught.value

    with pytest.warns(PTBDeprecationWarning, match="PTB_TIMEDELTA"):
        assert run(fake, scenario).retry_after == 7
    assert [(c.status, c.failed) for c in fake.calls_to("sendMessage")] == [
        (429, True),
        (200, False),
    ]
    assert [m["text"] for m in fake.messages(CHAT)] == ["second"]
    assert len(fake.sent_times(CHAT)) == 1

    monkeypatch.setenv("PTB_TIMEDELTA", "1")
    fake.fail("sendMessage", retry_after=3, times=2)

    async def opted_in(bot: Bot):
        for _ in range(2):
            with pytest.raises(RetryAfter) as caught:
                await bot.send_message(CHAT, "x")
        return caught.value

    assert run(fake, opted_in).retry_after == dtm.timedelta(seconds=3)


def test_server_errors_and_outages(fake: FakeTelegram):
    fake.fail("sendMessage", status=500)
    fake.fail("sendMessage", status=400, description="Bad Request: chat not found")

    async def scenario(bot: Bot):
        with pytest.raises(NetworkError) as server_error:
            await bot.send_message(CHAT, "x")
        with pytest.raises(BadRequest) as bad_request:
            await bot.send_message(CHAT, "x")
        fake.go_down()
        with pytest.raises(NetworkError) as outage:
            await bot.get_me()
        fake.come_back()
        await bot.send_message(CHAT, "back")
        return server_error.value, bad_request.value, outage.value

    server_error, bad_request, outage = run(fake, scenario)
    assert type(server_error) is NetworkError and server_error.message == "Internal Server Error"
    assert bad_request.message == "Chat not found"
    # An outage's HTML page is no JSON: PTB says so, still as a plain NetworkError.
    assert type(outage) is NetworkError
    assert outage.message.startswith("Bad Gateway (502). Parsing the server response")
    assert [m["text"] for m in fake.messages(CHAT)] == ["back"]
    assert [c.status for c in fake.calls if c.failed] == [500, 400, 502]


def test_wrong_tokens_and_unknown_methods(fake: FakeTelegram):
    async def wrong(token: str):
        async with fake.bot(token=token):
            pass

    # Bot.initialize rewords the InvalidToken its getMe raised.
    with pytest.raises(InvalidToken, match="was rejected by the server"):
        asyncio.run(wrong("123456:WRONG"))
    with pytest.raises(InvalidToken):  # a malformed token: 404 rather than 401
        asyncio.run(wrong("nonsense"))
    assert [(c.method, c.status) for c in fake.calls] == [("getMe", 401), ("getMe", 404)]

    async def scenario(bot: Bot):
        with pytest.raises(EndPointNotFound):
            await bot.do_api_request("sendHologram", {"chat_id": CHAT})

    run(fake, scenario)
    assert (fake.calls[-1].method, fake.calls[-1].status) == ("sendHologram", 404)


def test_webhook(fake: FakeTelegram):
    async def scenario(bot: Bot):
        await bot.set_webhook("https://rounds.test/telegram", secret_token="s3cret_-")
        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates()
        info = await bot.get_webhook_info()
        with pytest.raises(BadRequest):
            await bot.set_webhook("https://rounds.test/telegram", secret_token="no spaces")
        await bot.delete_webhook(drop_pending_updates=True)
        return info

    fake.push_message(CHAT, USER, "queued before")
    info = run(fake, scenario)
    assert (info.url, info.pending_update_count) == ("https://rounds.test/telegram", 1)
    assert fake.webhook() == {"url": "", "secret_token": None}
    assert fake.pending() == []
    assert fake.calls_to("setWebhook")[0].args["secret_token"] == "s3cret_-"


def test_an_application_polling_the_fake(fake: FakeTelegram):
    async def start(update: Update, context) -> None:
        name = update.effective_user.first_name
        await update.message.reply_text(f"Hello {name}", reply_markup=KEYBOARD)

    async def button(update: Update, context) -> None:
        await update.callback_query.answer("Taken")
        await update.callback_query.edit_message_text(f"Taken by {update.effective_user.id}")

    async def scenario():
        builder = ApplicationBuilder().token(TOKEN).base_url(fake.base_url)
        app = builder.base_file_url(fake.base_file_url).build()
        app.add_handlers([CommandHandler("start", start), CallbackQueryHandler(button)])
        async with app:
            await app.updater.start_polling(timeout=5)
            await app.start()
            try:
                fake.push_message(CHAT, USER, "/start", first_name="Wang")
                (hello,) = await fake.wait_for_async(lambda: fake.messages(CHAT))
                fake.push_callback(CHAT, USER, hello["message_id"], "take:INC-1")
                await fake.wait_for_async(lambda: fake.messages(CHAT)[0]["edits"])
            finally:
                await app.updater.stop()
                await app.stop()

    asyncio.run(scenario())
    (message,) = fake.messages(CHAT)
    assert (message["text"], message["reply_markup"]) == (f"Taken by {USER}", None)
    assert fake.callback_answers()[0]["text"] == "Taken"
    assert fake.pending() == []  # the updater confirmed what it handled on stop
    assert not [c for c in fake.calls if c.failed]


def test_sync_waiting_and_rate_bookkeeping(fake: FakeTelegram):
    def bot_thread():
        async def scenario(bot: Bot):
            for n in range(3):
                await bot.send_message(CHAT, f"tick {n}")
                await asyncio.sleep(0.05)
            await bot.edit_message_text("tock", CHAT, 1)

        run(fake, scenario)

    thread = threading.Thread(target=bot_thread)
    thread.start()
    edited = fake.wait_for(lambda: fake.messages(CHAT) and fake.messages(CHAT)[0]["edits"])
    thread.join(10)
    assert edited == 1
    stamps = fake.sent_times(CHAT)
    assert len(stamps) == 4 and stamps == sorted(stamps) and stamps[-1] - stamps[0] >= 0.1
    assert len(fake.sent_times(CHAT, methods=["sendMessage"])) == 3

    with pytest.raises(AssertionError, match=r"(?s)not true after 0.1s.*sendMessage"):
        fake.wait_for(lambda: False, timeout=0.1)
