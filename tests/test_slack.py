"""Rounds in Slack: the real slack-bolt app in HTTP mode, against a local Slack Web API."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from slack_bolt.request.async_request import AsyncBoltRequest
from sqlalchemy import func, select

from rounds.bot.app import App
from rounds.bot.slack_blocks import blocks as block_kit
from rounds.config import load_config
from rounds.db.models import AuditEntry
from rounds.reply import Button, Reply
from tests.conftest import write_config
from tests.running import RunningBot, chat_people, free_port
from tests.slackapi import FakeSlack, sign

pytestmark = pytest.mark.slow
SECRET = "signing-secret-for-tests"
OPS, MANAGERS = "COPS", "CMGR"
NURSE, WANG, ZHAO, CHEN = "UNURSE", "UWANG", "UZHAO", "UCHEN"
PEOPLE = chat_people(
    "slack",
    {"ops": OPS, "managers": MANAGERS, "helpdesk": "CHELP"},
    {"nurse.li": NURSE, "eng.wang": WANG, "eng.zhao": ZHAO, "mgr.chen": CHEN},
)


class SlackBot(RunningBot):
    """``rounds run`` with Slack in HTTP mode, and a way to talk to it as Slack does."""

    def __init__(self, app: App, fake: FakeSlack) -> None:
        super().__init__(app)
        self.fake = fake
        self.hooks: dict[str, str] = {}  # response URL -> the user who asked

    def answers(self, user: str) -> list[str]:
        """What ``user`` was told privately: through their response URLs or ephemerals."""
        return answers(self.fake, user, self.hooks)

    def post(
        self, body: str, *, headers: dict[str, str] | None = None, json_body: bool = False
    ) -> tuple[int, str]:
        """POST to /slack/events, signed unless ``headers`` are given."""
        headers = headers if headers is not None else sign(SECRET, body)
        headers["Content-Type"] = (
            "application/json" if json_body else "application/x-www-form-urlencoded"
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/slack/events",
            data=body.encode(),
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def command(self, user: str, text: str, channel: str = OPS) -> tuple[int, str]:
        body = self.fake.slash_command_body("/rounds", text, user, channel)
        self.hooks[dict(parse_qsl(body))["response_url"]] = user
        return self.post(body)

    def press(self, user: str, message_ts: str, value: str, channel: str = OPS) -> int:
        card = next(m for m in self.fake.messages(channel) if m["ts"] == message_ts)
        action_id = next(
            e["action_id"]
            for b in card["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
            if e["value"] == value
        )
        body = self.fake.block_actions_body(user, channel, message_ts, action_id, value)
        self.hooks[json.loads(dict(parse_qsl(body))["payload"])["response_url"]] = user
        return self.post(body)[0]


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture
def slack_bot(tmp_path: Path, fake: FakeSlack, database_url: str) -> Iterator[SlackBot]:
    port = free_port()
    text = (
        f'[http]\nlisten = "127.0.0.1:{port}"\n'
        f'[slack]\nenabled = true\nmode = "http"\nbot_token = "{fake.token}"\n'
        f'signing_secret = "{SECRET}"\napi_url = "{fake.base_url}"\n' + PEOPLE
    )
    config = load_config(
        write_config(tmp_path / "slack.toml", text, database_url=database_url), environ={}
    )
    app = App(config)
    app.upgrade()
    bot = SlackBot(app, fake).start()
    try:
        yield bot
    finally:
        bot.stop()
        app.close()


def answers(fake: FakeSlack, user: str, hooks: dict[str, str]) -> list[str]:
    mine = {url.rsplit("/", 1)[-1] for url, who in hooks.items() if who == user}
    told = [
        c.args.get("text", "")
        for c in fake.calls_to("response_url")
        if str(c.args.get("_hook")) in mine
    ]
    return told + [e["text"] for e in fake.ephemerals(user)]


def card(fake: FakeSlack) -> dict:
    return fake.wait_for(lambda: [m for m in fake.messages(OPS) if not m["thread_ts"]])[0]


def text_of(message: dict) -> str:
    return json.dumps(message.get("blocks") or [], ensure_ascii=False) + message.get("text", "")


def test_a_staff_report_posts_a_card_pages_the_duty_engineer_and_answers_privately(
    slack_bot, fake
):
    status, _ = slack_bot.command(NURSE, "report 门诊3号窗口打印机卡纸")

    assert status == 200
    posted = card(fake)
    assert "INC-1" in text_of(posted) and "门诊3号窗口打印机卡纸" in text_of(posted)
    actions = next(b for b in posted["blocks"] if b["type"] == "actions")["elements"]
    assert [e["value"] for e in actions] == ["ack INC-1", "resolve INC-1"]
    assert fake.wait_for(lambda: fake.messages(WANG))  # the duty engineer's DM
    mine = fake.wait_for(lambda: slack_bot.answers(NURSE))
    assert "Filed INC-1" in mine[0]


def test_an_engineer_pressing_acknowledge_updates_the_card_in_place(slack_bot, fake):
    slack_bot.command(NURSE, "report 门诊3号窗口打印机卡纸")
    posted = card(fake)

    assert slack_bot.press(WANG, posted["ts"], "ack INC-1") == 200

    fake.wait_for(lambda: fake.calls_to("chat.update"))
    updated = next(m for m in fake.messages(OPS) if m["ts"] == posted["ts"])
    assert "acknowledged" in text_of(updated)
    assert fake.wait_for(lambda: [m for m in fake.messages(OPS) if m["thread_ts"] == posted["ts"]])
    told = fake.wait_for(lambda: [m for m in fake.messages(NURSE) if "taken by" in m["text"]])
    assert "王工" in told[0]["text"]
    assert slack_bot.incidents()[0].status == "acknowledged"


def test_a_staff_member_pressing_acknowledge_is_refused_privately_and_nothing_changes(
    slack_bot, fake
):
    slack_bot.command(NURSE, "report 门诊3号窗口打印机卡纸")
    posted = card(fake)
    fake.wait_for(lambda: slack_bot.answers(NURSE))

    slack_bot.press(NURSE, posted["ts"], "ack INC-1")

    refusal = fake.wait_for(lambda: [a for a in slack_bot.answers(NURSE) if "may not" in a])
    assert "acknowledge INC-1" in refusal[0]
    assert fake.calls_to("chat.update") == []
    assert slack_bot.incidents()[0].status == "open"


def test_a_double_click_acknowledges_once_and_says_nothing_twice(slack_bot, fake):
    slack_bot.command(NURSE, "report 门诊3号窗口打印机卡纸")
    posted = card(fake)

    slack_bot.press(WANG, posted["ts"], "ack INC-1")
    slack_bot.press(WANG, posted["ts"], "ack INC-1")

    fake.wait_for(lambda: slack_bot.answers(WANG))
    time.sleep(0.5)  # give a second handling the chance it must not take
    assert len(slack_bot.answers(WANG)) == 1
    with slack_bot.app.db.session(write=False) as s:
        acks = s.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "ack")
        )
    assert acks == 1


@pytest.mark.parametrize("forgery", ["bad signature", "stale timestamp", "no signature"])
def test_forged_and_stale_requests_get_401_do_nothing_and_are_audited(slack_bot, fake, forgery):
    body = fake.slash_command_body("/rounds", "report 打印机卡纸", NURSE, OPS)
    if forgery == "bad signature":
        headers = sign("not-the-secret", body)
    elif forgery == "stale timestamp":
        headers = sign(SECRET, body, timestamp=int(time.time()) - 6 * 60)
    else:
        headers = {}

    status, _ = slack_bot.post(body, headers=headers)

    assert status == 401
    time.sleep(0.3)
    assert slack_bot.incidents() == []
    assert fake.calls_to("chat.postMessage") == []
    with slack_bot.app.db.session(write=False) as s:
        refused = list(s.scalars(select(AuditEntry).where(AuditEntry.action == "request")))
    assert [(a.actor, a.result) for a in refused] == [("slack", "denied")]
    expected = "stale timestamp" if forgery == "stale timestamp" else "bad signature"
    assert refused[0].detail == expected


def test_a_retried_event_is_handled_once(slack_bot, fake):
    event = {
        "type": "message",
        "channel_type": "im",
        "channel": "DNURSE",
        "user": NURSE,
        "text": "report 二楼护士站打印机卡纸",
        "ts": "1.000001",
    }
    body = fake.event_body(event, event_id="Ev-retried-1")

    first = slack_bot.post(body, json_body=True)[0]
    retry_headers = {
        **sign(SECRET, body),
        "X-Slack-Retry-Num": "1",
        "X-Slack-Retry-Reason": "http_timeout",
    }
    second = slack_bot.post(body, headers=retry_headers, json_body=True)[0]

    assert (first, second) == (200, 200)
    fake.wait_for(lambda: fake.messages("DNURSE"))
    time.sleep(0.5)
    assert len(slack_bot.incidents()) == 1


def test_a_dm_and_a_mention_work_like_the_slash_command(slack_bot, fake):
    dm = {
        "type": "message",
        "channel_type": "im",
        "channel": "DWANG",
        "user": WANG,
        "text": "oncall",
        "ts": "1.000002",
    }
    slack_bot.post(fake.event_body(dm), json_body=True)
    mention = {
        "type": "app_mention",
        "channel": OPS,
        "user": WANG,
        "text": f"<@{fake.bot_user_id}> whoami",
        "ts": "1.000003",
    }
    slack_bot.post(fake.event_body(mention), json_body=True)

    assert "On duty now" in fake.wait_for(lambda: fake.messages("DWANG"))[0]["text"]
    assert "You are 王工 (eng.wang)" in fake.wait_for(lambda: fake.ephemerals(WANG))[0]["text"]


def test_slack_answering_429_then_500_loses_and_duplicates_nothing(slack_bot, fake):
    fake.fail("chat.postMessage", retry_after=1, times=1)
    fake.fail("chat.postMessage", status=500, times=2)

    slack_bot.command(NURSE, "report 门诊3号窗口打印机卡纸")
    slack_bot.command(NURSE, "report 二楼护士站打印机卡纸")

    def delivered() -> bool:
        return (
            len([m for m in fake.messages(OPS) if not m["thread_ts"]]) == 2
            and len(fake.messages(WANG)) == 2
        )

    fake.wait_for(delivered, timeout=30)
    cards = [m for m in fake.messages(OPS) if not m["thread_ts"]]
    assert ["INC-1" in text_of(cards[0]), "INC-2" in text_of(cards[1])] == [True, True]
    assert len([c for c in fake.calls_to("chat.postMessage") if c.failed]) == 3


def test_report_without_text_opens_a_modal_whose_submission_files_the_incident(slack_bot, fake):
    slack_bot.command(NURSE, "report")
    view = fake.wait_for(lambda: fake.views_opened())[0]
    assert [b["block_id"] for b in view["blocks"]] == [
        "system",
        "location",
        "impact",
        "urgency",
        "description",
    ]

    def option(value: str) -> dict:
        return {
            "type": "static_select",
            "selected_option": {"value": value, "text": {"type": "plain_text", "text": value}},
        }

    values = {
        "system": {"system": option("PACS")},
        "location": {"location": "放射科 CT 室"},
        "impact": {"impact": option("I3")},
        "urgency": {"urgency": option("U2")},
        "description": {"description": "影像调阅很慢"},
    }
    status, _ = slack_bot.post(fake.view_submission_body(NURSE, "rounds_report", values))

    assert status == 200
    assert "INC-1" in text_of(card(fake))
    incident = slack_bot.incidents()[0]
    assert (incident.system, incident.location) == ("PACS", "放射科 CT 室")
    assert incident.priority == "P3"


def test_an_invalid_modal_shows_the_errors_inline_and_files_nothing(slack_bot, fake):
    slack_bot.command(NURSE, "report")
    fake.wait_for(lambda: fake.views_opened())
    values = {
        "system": {"system": {"type": "static_select", "selected_option": None}},
        "location": {"location": "x" * 150},
        "impact": {"impact": "I3"},
        "urgency": {"urgency": "U2"},
        "description": {"description": "   "},
    }

    status, body = slack_bot.post(fake.view_submission_body(NURSE, "rounds_report", values))

    assert status == 200
    answer = json.loads(body)
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"system", "location", "description"}
    assert slack_bot.incidents() == []


def test_resolve_button_asks_what_fixed_it_and_resolves(slack_bot, fake):
    slack_bot.command(NURSE, "report 门诊3号窗口打印机卡纸")
    posted = card(fake)
    slack_bot.press(WANG, posted["ts"], "resolve INC-1")
    view = fake.wait_for(lambda: fake.views_opened())[0]
    assert view["callback_id"] == "rounds_resolve"

    values = {"resolution": {"resolution": "清理了卡纸"}}
    slack_bot.post(fake.view_submission_body(WANG, "rounds_resolve", values))

    fake.wait_for(lambda: slack_bot.incidents()[0].status == "resolved")
    assert slack_bot.incidents()[0].resolution == "清理了卡纸"


def test_the_app_home_shows_my_incidents_and_who_is_on_duty(slack_bot, fake):
    slack_bot.command(NURSE, "report 门诊3号窗口打印机卡纸")
    card(fake)

    slack_bot.post(
        fake.event_body({"type": "app_home_opened", "user": NURSE, "tab": "home"}), json_body=True
    )

    published = fake.wait_for(lambda: fake.views_published(NURSE))[0]["view"]
    shown = json.dumps(published, ensure_ascii=False)
    assert published["type"] == "home"
    assert "INC-1" in shown and "On duty now" in shown


def test_user_text_cannot_mention_the_channel_or_forge_links(slack_bot, fake):
    slack_bot.command(NURSE, "report <!channel> 打印机卡纸 <http://evil.example|点这里> & more")

    shown = text_of(card(fake))
    assert "<!channel>" not in shown and "<http://" not in shown
    assert "&lt;!channel&gt;" in shown and "&amp; more" in shown


def test_the_health_check_reports_slack(slack_bot, fake):
    card_count = len(fake.messages(OPS))
    with urllib.request.urlopen(f"http://127.0.0.1:{slack_bot.port}/healthz") as response:
        health = json.loads(response.read())

    assert health["transports"] == ["slack"]
    assert health["slack"]["mode"] == "http"
    assert card_count == 0


def test_long_text_is_split_within_block_kit_limits():
    reply = Reply(
        "第一段\n" + "很长的说明。" * 1500,
        fields=[(f"k{i}", "v") for i in range(12)],
        buttons=[Button("确认" * 50, "ack INC-1")],
    )

    rendered = block_kit(reply)

    sections = [b for b in rendered if b["type"] == "section" and "text" in b]
    assert len(sections) >= 3 and all(len(b["text"]["text"]) <= 3000 for b in sections)
    assert all(len(b["fields"]) <= 10 for b in rendered if "fields" in b)
    assert len(rendered[-1]["elements"][0]["text"]["text"]) <= 75


def test_a_command_whose_text_mentions_payload_still_arrives(slack_bot, fake):
    slack_bot.command(NURSE, "report 输液泵 payload 数据上传失败")

    assert "INC-1" in text_of(card(fake))
    assert "payload" in slack_bot.incidents()[0].title


@pytest.fixture
def socket_app(tmp_path: Path, fake: FakeSlack, database_url: str) -> Iterator[App]:
    text = (
        f'[slack]\nenabled = true\nmode = "socket"\nbot_token = "{fake.token}"\n'
        f'app_token = "xapp-1-test"\napi_url = "{fake.base_url}"\n' + PEOPLE
    )
    config = load_config(
        write_config(tmp_path / "socket.toml", text, database_url=database_url), environ={}
    )
    app = App(config)
    app.upgrade()
    yield app
    app.close()


def test_socket_mode_requests_reach_the_same_handlers(socket_app, fake):
    transport = socket_app.transports["slack"]
    slash = dict(parse_qsl(fake.slash_command_body("/rounds", "report 打印机卡纸", NURSE, OPS)))
    hooks = {slash["response_url"]: NURSE}

    async def scenario() -> None:
        response = await transport.bolt.async_dispatch(
            AsyncBoltRequest(mode="socket_mode", body=slash)
        )
        assert response.status == 200
        await fake.wait_for_async(lambda: answers(fake, NURSE, hooks))
        await socket_app.dispatcher.drain()

    asyncio.run(scenario())

    assert "INC-1" in text_of(card(fake))
    assert "Filed INC-1" in answers(fake, NURSE, hooks)[0]


class DroppedSocket:
    """A Socket Mode handler whose connection is gone (as the health check sees it)."""

    class client:  # lower case: it stands for the handler's attribute
        @staticmethod
        async def is_connected() -> bool:
            return False


def test_a_socket_down_longer_than_stale_seconds_with_no_event_is_reported_stale(socket_app):
    transport = socket_app.transports["slack"]
    transport._socket = DroppedSocket()

    just_dropped = asyncio.run(transport.health())
    transport._down_since = time.monotonic() - socket_app.config.slack.stale_seconds - 1
    long_down = asyncio.run(transport.health())

    assert (just_dropped["connected"], just_dropped["status"]) == (False, "ok")
    assert (long_down["mode"], long_down["connected"], long_down["status"]) == (
        "socket",
        False,
        "stale",
    )


def test_messages_to_one_channel_are_paced_about_one_a_second(slack_bot, fake):
    for n in range(3):
        slack_bot.command(NURSE, f"report {n}号窗口打印机卡纸")

    fake.wait_for(lambda: len([m for m in fake.messages(OPS) if not m["thread_ts"]]) == 3)
    posts = [c.at for c in fake.calls_to("chat.postMessage") if c.args["channel"] == OPS]
    gaps = [later - earlier for earlier, later in itertools.pairwise(posts)]
    assert all(gap >= 0.9 for gap in gaps), gaps


def test_a_command_in_a_channel_the_bot_is_not_in_is_still_answered(slack_bot, fake):
    fake.fail("chat.postEphemeral", error="not_in_channel", times=5)

    slack_bot.command(NURSE, "whoami", channel="CELSEWHERE")

    assert "李护士" in fake.wait_for(lambda: slack_bot.answers(NURSE))[0]


def test_slack_markup_in_a_dm_reaches_rounds_as_plain_text(slack_bot, fake):
    dm = {
        "type": "message",
        "channel_type": "im",
        "channel": "DNURSE",
        "user": NURSE,
        "text": "report 打印机 &amp; 扫描仪 坏了 见 <http://his.example.org|his.example.org>",
        "ts": "1.000009",
    }
    slack_bot.post(fake.event_body(dm), json_body=True)

    card(fake)
    assert slack_bot.incidents()[0].title == "打印机 & 扫描仪 坏了 见 his.example.org"
