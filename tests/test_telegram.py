"""Rounds in Telegram: a real python-telegram-bot Application against a local Bot API."""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from rounds.bot.app import App
from rounds.bot.telegram import render, split, utf16_len
from rounds.config import load_config
from rounds.db.models import AuditEntry
from rounds.reply import Reply
from tests.conftest import write_config
from tests.running import RunningBot, chat_people, free_port
from tests.telegramapi import FakeTelegram

pytestmark = pytest.mark.slow
OPS, MANAGERS, HELPDESK = -1001, -1002, -1003
NURSE, WANG, ZHAO, CHEN = 1001, 1002, 1003, 1004
SECRET = "webhook-secret-for-tests"
PEOPLE = chat_people(
    "telegram",
    {"ops": OPS, "managers": MANAGERS, "helpdesk": HELPDESK},
    {"nurse.li": NURSE, "eng.wang": WANG, "eng.zhao": ZHAO, "mgr.chen": CHEN},
)


def make_bot(tmp_path: Path, fake: FakeTelegram, database_url: str, extra: str = "") -> App:
    port = free_port()
    text = (
        f'[http]\nlisten = "127.0.0.1:{port}"\n'
        f'[telegram]\nenabled = true\ntoken = "{fake.token}"\n'
        f'base_url = "{fake.base_url}"\nbase_file_url = "{fake.base_file_url}"\n'
        f"poll_seconds = 1\n{extra}" + PEOPLE
    )
    config = load_config(
        write_config(tmp_path / "telegram.toml", text, database_url=database_url), environ={}
    )
    app = App(config)
    app.upgrade()
    return app


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram(poll_cap=0.5) as server:
        yield server


@pytest.fixture
def telegram_bot(tmp_path: Path, fake: FakeTelegram, database_url: str) -> Iterator[RunningBot]:
    app = make_bot(tmp_path, fake, database_url)
    bot = RunningBot(app).start()
    try:
        yield bot
    finally:
        bot.stop()
        app.close()


def card(fake: FakeTelegram, n: int = 1) -> dict:
    cards = fake.wait_for(
        lambda: (
            [m for m in fake.messages(OPS) if not m["reply_to"]]
            if len([m for m in fake.messages(OPS) if not m["reply_to"]]) >= n
            else None
        )
    )
    return cards[n - 1]


def buttons(message: dict) -> list[str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return [b["callback_data"] for b in itertools.chain.from_iterable(rows)]


def test_a_private_report_reaches_the_ops_group_and_the_duty_engineer(telegram_bot, fake):
    fake.push_message(NURSE, NURSE, "/report 门诊3号窗口打印机卡纸")

    posted = card(fake)
    assert "INC-1" in posted["text"] and "门诊3号窗口打印机卡纸" in posted["text"]
    assert posted["parse_mode"] == "HTML"
    assert buttons(posted) == ["ack INC-1", "resolve INC-1"]
    assert "New incident INC-1" in fake.wait_for(lambda: fake.messages(WANG))[0]["text"]
    assert "Filed INC-1" in fake.wait_for(lambda: fake.messages(NURSE))[0]["text"]


def test_an_engineer_pressing_acknowledge_edits_the_card_and_the_reporter_is_told(
    telegram_bot, fake
):
    fake.push_message(NURSE, NURSE, "/report 门诊3号窗口打印机卡纸")
    posted = card(fake)

    fake.push_callback(OPS, WANG, posted["message_id"], "ack INC-1")

    answer = fake.wait_for(lambda: fake.callback_answers())[0]
    assert answer["show_alert"] is False and "You acknowledged INC-1" in answer["text"]
    edited = fake.wait_for(
        lambda: [
            m
            for m in fake.messages(OPS)
            if m["message_id"] == posted["message_id"] and "acknowledged" in m["text"]
        ]
    )
    assert buttons(edited[0]) == ["resolve INC-1"]
    told = fake.wait_for(lambda: [m for m in fake.messages(NURSE) if "taken by" in m["text"]])
    assert "王工" in told[0]["text"]


def test_a_staff_press_is_refused_with_an_alert_only_they_see(telegram_bot, fake):
    fake.push_message(NURSE, NURSE, "/report 门诊3号窗口打印机卡纸")
    posted = card(fake)

    fake.push_callback(OPS, NURSE, posted["message_id"], "ack INC-1")

    answer = fake.wait_for(lambda: fake.callback_answers())[0]
    assert answer["show_alert"] is True and "may not acknowledge" in answer["text"]
    time.sleep(0.3)
    assert fake.calls_to("editMessageText") == []
    assert telegram_bot.incidents()[0].status == "open"


def test_the_guided_report_works_with_buttons_and_text(telegram_bot, fake):
    fake.push_message(NURSE, NURSE, "/report")
    first = fake.wait_for(lambda: fake.messages(NURSE))[-1]
    assert "1/5" in first["text"] and "HIS" in buttons(first)

    fake.push_callback(NURSE, NURSE, first["message_id"], "PACS")
    fake.wait_for(lambda: any("2/5" in m["text"] for m in fake.messages(NURSE)))
    fake.push_message(NURSE, NURSE, "放射科 CT 室")
    fake.wait_for(lambda: any("3/5" in m["text"] for m in fake.messages(NURSE)))
    for step, answer in (("4/5", "I3"), ("5/5", "U2")):
        question = fake.messages(NURSE)[-1]
        fake.push_callback(NURSE, NURSE, question["message_id"], answer)
        fake.wait_for(lambda step=step: any(step in m["text"] for m in fake.messages(NURSE)))
    fake.push_message(NURSE, NURSE, "影像调阅很慢")
    fake.wait_for(lambda: any("send photos" in m["text"] for m in fake.messages(NURSE)))
    fake.push_message(NURSE, NURSE, "done")
    summary = fake.wait_for(lambda: [m for m in fake.messages(NURSE) if "Priority" in m["text"]])
    fake.push_callback(NURSE, NURSE, summary[0]["message_id"], "yes")

    assert "INC-1" in card(fake)["text"]
    incident = telegram_bot.incidents()[0]
    assert (incident.system, incident.location, incident.priority) == (
        "PACS",
        "放射科 CT 室",
        "P3",
    )


def test_what_it_cannot_read_gets_a_sentence_and_what_is_not_for_it_is_ignored(telegram_bot, fake):
    fake.push_message(NURSE, NURSE, None, sticker=True)
    fake.push_message(NURSE, NURSE, None, voice=True)
    fake.push_message(-999, NURSE, "/report 不相干的群")  # a group Rounds is not set up for
    fake.push_message(HELPDESK, NURSE, "大家好")  # chatter in the help-desk group
    fake.push_edited_message(NURSE, NURSE, 1, "/report 改过的消息")

    answers = fake.wait_for(lambda: len(fake.messages(NURSE)) >= 2 and fake.messages(NURSE))
    assert all("describe the fault in words" in m["text"] for m in answers)
    fake.wait_for(lambda: not fake.pending())
    time.sleep(0.5)
    assert fake.messages(-999) == [] and fake.messages(HELPDESK) == []
    assert telegram_bot.incidents() == []


def test_an_update_delivered_twice_is_handled_once(telegram_bot, fake):
    update = fake.message_json(NURSE, NURSE, "/report 二楼护士站打印机卡纸")
    fake.push(dict(update))
    card(fake)

    fake.push(dict(update))  # the same update_id again, as after a crash before the offset
    fake.wait_for(lambda: not fake.pending())
    time.sleep(0.5)

    assert len(telegram_bot.incidents()) == 1


def test_commands_are_registered_in_both_languages(telegram_bot, fake):
    registered = fake.wait_for(lambda: fake.commands() if len(fake.commands()) >= 3 else None)

    assert {"zh", "en"} <= set(registered)
    english = {c["command"]: c["description"] for c in registered["en"]}
    chinese = {c["command"]: c["description"] for c in registered["zh"]}
    assert set(english) == set(chinese) and {"report", "ack", "resolve"} <= set(english)
    assert english["report"] != chinese["report"]


def test_a_flood_is_delivered_within_the_limits_and_nothing_is_lost(telegram_bot, fake):
    for n in range(4):
        fake.push_message(NURSE, NURSE, f"/report {n}号窗口打印机卡纸")

    card(fake, 4)
    fake.wait_for(lambda: len(fake.messages(WANG)) == 4, timeout=30)
    group = fake.sent_times(OPS, methods=("sendMessage",))
    private = fake.sent_times(WANG, methods=("sendMessage",))
    assert all(b - a >= 2.9 for a, b in itertools.pairwise(group)), group
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(private)), private
    assert [i.id for i in telegram_bot.incidents()] == [1, 2, 3, 4]


def test_flood_control_and_an_outage_delay_messages_and_lose_none(telegram_bot, fake):
    fake.fail("sendMessage", retry_after=1, times=1)
    fake.push_message(NURSE, NURSE, "/report 门诊3号窗口打印机卡纸")
    card(fake)

    fake.go_down()
    fake.push_callback(OPS, WANG, card(fake)["message_id"], "ack INC-1")
    time.sleep(1.5)
    fake.come_back()

    fake.wait_for(lambda: [m for m in fake.messages(NURSE) if "taken by" in m["text"]], timeout=30)
    assert telegram_bot.incidents()[0].status == "acknowledged"


def test_webhook_mode_registers_itself_and_refuses_a_wrong_secret(tmp_path, fake, database_url):
    extra = (
        f'mode = "webhook"\nwebhook_url = "https://rounds.example/telegram/webhook"\n'
        f'webhook_secret = "{SECRET}"\n'
    )
    app = make_bot(tmp_path, fake, database_url, extra)
    bot = RunningBot(app).start()
    url = f"http://127.0.0.1:{app.config.http.port}/telegram/webhook"

    def post(update: dict, secret: str | None) -> int:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        request = urllib.request.Request(url, data=json.dumps(update).encode(), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        assert (
            fake.wait_for(lambda: fake.webhook().get("url"))
            == "https://rounds.example/telegram/webhook"
        )
        assert fake.webhook()["secret_token"] == SECRET
        update = fake.message_json(NURSE, NURSE, "/report 门诊3号窗口打印机卡纸")

        assert post(update, "wrong") == 401
        assert post(update, None) == 401
        assert bot.incidents() == []
        assert post(update, SECRET) == 200
        assert "INC-1" in card(fake)["text"]
        with app.db.session(write=False) as s:
            refused = s.scalars(select(AuditEntry.detail).where(AuditEntry.action == "request"))
            assert list(refused) == ["bad webhook secret", "bad webhook secret"]
    finally:
        bot.stop()
        app.close()


def test_html_is_escaped_and_long_text_is_split_at_4096():
    rendered = render(Reply("<b>不是标签</b> & <script>", fields=[("状态", "<x>")]))
    assert "&lt;b&gt;不是标签&lt;/b&gt; &amp; &lt;script&gt;" in rendered
    assert "<b>状态</b>: &lt;x&gt;" in rendered

    pieces = split(render(Reply("行" * 3000 + "\n" + "&" * 3000)))
    assert pieces[0] == "行" * 3000
    assert all(utf16_len(p) <= 4096 for p in pieces)
    assert "".join(pieces[1:]) == "&amp;" * 3000  # no entity cut in half
    emoji = split("😀" * 3000)  # two UTF-16 units each, as Telegram counts
    assert [utf16_len(p) for p in emoji] == [4096, 1904]


def test_a_refused_start_up_call_is_given_up_and_the_bot_still_serves(
    tmp_path, fake, database_url
):
    fake.fail("setMyCommands", status=400, description="Bad Request: BOT_COMMAND_INVALID")
    app = make_bot(tmp_path, fake, database_url)
    bot = RunningBot(app).start()
    try:
        fake.push_message(NURSE, NURSE, "/report 门诊3号窗口打印机卡纸")
        assert "INC-1" in card(fake)["text"]
    finally:
        bot.stop()
        app.close()


JPEG = b"\xff\xd8\xff\xe0" + b"rounds-test-photo" * 200


def to_photos_step(fake: FakeTelegram) -> None:
    fake.push_message(NURSE, NURSE, "/report")
    for answer in ("1", "门诊收费处", "3", "2", "收费窗口读卡器报错"):
        count = len(fake.messages(NURSE))
        fake.push_message(NURSE, NURSE, answer)
        fake.wait_for(lambda count=count: len(fake.messages(NURSE)) > count)


def test_photos_sent_in_the_guided_report_are_kept_and_shown_to_engineers(telegram_bot, fake):
    to_photos_step(fake)
    fake.push_photo(NURSE, NURSE, JPEG)
    fake.wait_for(lambda: any("Got 1 photo" in m["text"] for m in fake.messages(NURSE)))
    fake.push_message(NURSE, NURSE, "done")
    fake.wait_for(lambda: any("Photos: 1" in m["text"] for m in fake.messages(NURSE)))
    fake.push_message(NURSE, NURSE, "yes")
    card(fake)

    data = telegram_bot.app.config.rounds.data_dir
    stored = [p for p in (data / "attachments").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in stored] == [JPEG]
    fake.push_message(WANG, WANG, "/incident INC-1")
    fake.wait_for(lambda: fake.calls_to("sendPhoto"))
    timeline = fake.wait_for(
        lambda: [m for m in fake.messages(WANG) if "Timeline" in (m["text"] or "")]
    )
    assert "1 photo" in timeline[0]["text"]


def test_a_photo_captioned_report_files_with_the_photo(telegram_bot, fake):
    fake.push_photo(NURSE, NURSE, JPEG, caption="/report 三楼护士站打印机卡纸")

    assert "INC-1" in card(fake)["text"]
    with telegram_bot.app.db.session(write=False) as s:
        attached = list(s.scalars(select(AuditEntry).where(AuditEntry.action == "attach")))
    assert [(a.record, a.actor) for a in attached] == [("INC-1", "nurse.li")]


def test_a_photo_too_large_is_refused_with_a_sentence(tmp_path, fake, database_url):
    app = make_bot(tmp_path, fake, database_url, "max_photo_bytes = 10000\n")
    bot = RunningBot(app).start()
    try:
        fake.push_photo(NURSE, NURSE, JPEG * 10, caption="/report 打印机卡纸")
        answer = fake.wait_for(lambda: fake.messages(NURSE))[0]["text"]
        assert "too large" in answer
        time.sleep(0.3)
        assert bot.incidents() == []
    finally:
        bot.stop()
        app.close()


def test_a_stray_photo_is_answered_and_not_kept(telegram_bot, fake):
    fake.push_photo(NURSE, NURSE, JPEG)

    answer = fake.wait_for(lambda: fake.messages(NURSE))[0]["text"]
    assert "no report is in progress" in answer
    data = telegram_bot.app.config.rounds.data_dir
    assert [p for p in (data / "attachments").rglob("*") if p.is_file()] == []


def test_an_update_that_could_not_be_handled_comes_again_and_is_not_lost(telegram_bot, fake):
    db = telegram_bot.app.db
    with db.engine.begin() as conn:  # the database cannot answer for a moment
        conn.exec_driver_sql("ALTER TABLE forms RENAME TO forms_away")
    fake.push_message(NURSE, NURSE, "/report 门诊3号窗口打印机卡纸")
    time.sleep(1.5)
    assert telegram_bot.incidents() == []
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE forms_away RENAME TO forms")

    assert "INC-1" in card(fake)["text"]
    assert len(telegram_bot.incidents()) == 1


def test_a_double_tap_answers_one_step_of_the_report(telegram_bot, fake):
    fake.push_message(NURSE, NURSE, "/report")
    first = fake.wait_for(lambda: fake.messages(NURSE))[-1]

    fake.push_callback(NURSE, NURSE, first["message_id"], "PACS")
    fake.push_callback(NURSE, NURSE, first["message_id"], "PACS")

    fake.wait_for(lambda: any("2/5" in (m["text"] or "") for m in fake.messages(NURSE)))
    time.sleep(0.5)
    assert not any("3/5" in (m["text"] or "") for m in fake.messages(NURSE))


def test_a_photo_at_a_step_that_asks_no_photo_asks_again(telegram_bot, fake):
    fake.push_message(NURSE, NURSE, "/report")
    fake.wait_for(lambda: fake.messages(NURSE))
    fake.push_photo(NURSE, NURSE, JPEG)

    again = fake.wait_for(
        lambda: [m for m in fake.messages(NURSE) if "needs no photo" in (m["text"] or "")]
    )
    assert "1/5" in again[0]["text"]
    data = telegram_bot.app.config.rounds.data_dir
    assert [p for p in (data / "attachments").rglob("*") if p.is_file()] == []


def test_start_shows_the_help(telegram_bot, fake):
    fake.push_message(NURSE, NURSE, "/start")

    assert "Commands:" in fake.wait_for(lambda: fake.messages(NURSE))[0]["text"]
