"""The Slack transport: the slash command, buttons, the report modal, DMs and mentions in;
incident cards, edits, threads and DMs out through the outbox.

It turns Slack's payloads into the platform-neutral :class:`Inbound` and renders replies;
which commands exist and who may run them is the bot's business, not this module's.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from rounds.commands import forms as form_steps
from rounds.commands import split_command
from rounds.config import SlackSection
from rounds.itsm.people import Person
from rounds.reply import Reply

from . import slack_blocks as kit
from .core import Bot, Inbound
from .dedup import first_time
from .dispatcher import Dispatcher, Outgoing, SendError

log = logging.getLogger(__name__)

PLATFORM = "slack"
REPORT_VIEW = "rounds_report"
RESOLVE_VIEW = "rounds_resolve"
DOUBLE_CLICK = timedelta(seconds=5)
RETRIED_EVENT = timedelta(days=1)
PACE_SECONDS = 1.0  # Slack allows about one message a second per channel
# Errors that no retry will cure; anything else is retried.
PERMANENT = {
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "no_permission",
    "missing_scope",
    "invalid_blocks",
    "msg_too_long",
    "message_not_found",
    "cant_update_message",
    "user_not_found",
}
# Errors about the bot's own credentials: hold the messages until they are fixed.
CREDENTIALS = {"invalid_auth", "account_inactive", "token_revoked", "not_authed"}
CREDENTIALS_WAIT = 300.0
MENTION = re.compile(r"^\s*<@[A-Z0-9]+>\s*")


_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


def decode(text: str) -> str:
    """Slack's markup in a message as plain text: links by their label, mentions kept.

    Slack sends ``<https://x|label>``, ``<@U123>``, ``<!here>`` and escapes ``&<>``;
    Rounds keeps plain text and escapes again on the way out.
    """

    def plain(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if label:
            return label
        if target.startswith("!"):
            return "@" + target[1:].split("^", 1)[0]
        return target

    text = _LINK.sub(plain, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def person_for(bot: Bot, user_id: str) -> Person:
    """The configured person with this Slack id, or a stranger (staff) named after it."""
    return bot.env.people.by_slack(user_id) or bot.env.people.stranger(PLATFORM, user_id)


class SlackSender:
    """Delivers outbox messages with the Web API, paced per channel."""

    def __init__(self, client: AsyncWebClient, pace_seconds: float = PACE_SECONDS) -> None:
        self.client = client
        self.pace_seconds = pace_seconds
        self._last: dict[str, float] = {}

    async def send(self, item: Outgoing) -> str:
        reply = item.message
        content = {"text": kit.fallback_text(reply), "blocks": kit.blocks(reply)}
        try:
            if item.op == "edit" and item.edit_of is not None:
                channel, ts = kit.parse_message_id(item.edit_of)
                await self._pace(channel)
                answer = await self.client.chat_update(channel=channel, ts=ts, **content)
            else:
                channel = item.address
                if item.thread_of is not None:
                    channel, thread_ts = kit.parse_message_id(item.thread_of)
                    content["thread_ts"] = thread_ts
                await self._pace(channel)
                answer = await self.client.chat_postMessage(channel=channel, **content)
        except SlackApiError as exc:
            raise translate(exc) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SendError(f"network: {type(exc).__name__}") from exc
        return kit.message_id(answer["channel"], answer["ts"])

    async def _pace(self, channel: str) -> None:
        wait = self._last.get(channel, 0.0) + self.pace_seconds - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last[channel] = time.monotonic()


def translate(exc: SlackApiError) -> SendError:
    """Slack's answer as a retry decision: wait Retry-After, back off, or give up."""
    response = exc.response
    status = getattr(response, "status_code", 200)
    headers = {k.lower(): v for k, v in (getattr(response, "headers", None) or {}).items()}
    if status == 429:
        raw = headers.get("retry-after", "1")
        retry_after = float(raw[0] if isinstance(raw, list) else raw)
        return SendError("ratelimited", retry_after=retry_after)
    if status >= 500:
        return SendError(f"http {status}")
    error = response.get("error", "unknown") if hasattr(response, "get") else "unknown"
    if error in CREDENTIALS:
        # A token being rotated or an app reinstalled: hold the messages, do not drop them.
        return SendError(f"slack: {error}", retry_after=CREDENTIALS_WAIT)
    return SendError(f"slack: {error}", permanent=error in PERMANENT)


class SlackTransport:
    """Slack in and out: a bolt AsyncApp in HTTP or Socket Mode, and the outbox sender."""

    def __init__(self, bot: Bot, dispatcher: Dispatcher, section: SlackSection) -> None:
        self.bot = bot
        self.section = section
        self.client = AsyncWebClient(token=section.bot_token, base_url=section.api_url)
        self.verifier = (
            SignatureVerifier(section.signing_secret) if section.signing_secret else None
        )
        self.bolt = AsyncApp(
            client=self.client,
            signing_secret=section.signing_secret or "socket-mode-does-not-sign",
            authorize=self._authorizer(),
            process_before_response=False,
            request_verification_enabled=section.mode == "http",
            raise_error_for_unhandled_request=False,
        )
        self._identity: dict[str, Any] | None = None
        self._warm: asyncio.Task | None = None
        self._socket: Any = None
        self.last_event_at: float | None = None
        self._down_since: float | None = None
        self._register()
        dispatcher.senders[PLATFORM] = SlackSender(self.client)

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        self._warm = asyncio.create_task(self._warm_identity(), name="slack-auth")
        if self.section.mode == "socket":
            self._socket = AsyncSocketModeHandler(self.bolt, self.section.app_token)
            await self._socket.connect_async()
        log.info("slack started mode=%s", self.section.mode)

    async def stop(self) -> None:
        if self._warm is not None:
            self._warm.cancel()
        if self._socket is not None:
            await self._socket.close_async()

    async def health(self) -> dict[str, Any]:
        """Socket Mode is "stale" when down, with no event, for ``stale_seconds``."""
        now = time.monotonic()
        age = None if self.last_event_at is None else round(now - self.last_event_at, 1)
        state: dict[str, Any] = {
            "mode": self.section.mode,
            "authorized": bool(self._identity),
            "last_event_seconds": age,
            "status": "ok",
        }
        if self._socket is not None:
            connected = await self._socket.client.is_connected()
            if connected:
                self._down_since = None
            elif self._down_since is None:
                self._down_since = now
            down = 0.0 if self._down_since is None else now - self._down_since
            quiet = age is None or age > self.section.stale_seconds
            state["connected"] = connected
            if not connected and down > self.section.stale_seconds and quiet:
                state["status"] = "stale"
                log.warning("slack socket down for %.0fs with no event", down)
        return state

    async def _warm_identity(self) -> None:
        """Ask Slack who we are, retrying until it answers, so no first command waits."""
        delay = 1.0
        while self._identity is None:
            try:
                self._identity = dict((await self.client.auth_test()).data)
                log.info(
                    "slack authorized team=%s bot=%s",
                    self._identity.get("team_id"),
                    self._identity.get("user_id"),
                )
            except (TimeoutError, SlackApiError, aiohttp.ClientError, OSError) as exc:
                log.warning(
                    "slack auth.test failed (%s); retrying in %.0fs", type(exc).__name__, delay
                )
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 60.0)

    def _authorizer(self) -> Any:
        """Bolt's authorize hook, answered from the cached identity (bolt passes the
        arguments a function names, so this is a closure with explicit parameters)."""

        async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            identity = self._identity or {}
            return AuthorizeResult(
                enterprise_id=identity.get("enterprise_id", enterprise_id),
                team_id=identity.get("team_id", team_id),
                bot_user_id=identity.get("user_id"),
                bot_id=identity.get("bot_id"),
                bot_token=self.section.bot_token,
            )

        return authorize

    # --- HTTP mode -----------------------------------------------------------------

    async def handle_http(self, request: web.Request) -> web.Response:
        """``POST /slack/events``: verify the signature, then let bolt dispatch."""
        body = await request.text()
        if self.verifier is None or not self.verifier.is_valid_request(
            body, dict(request.headers)
        ):
            stale = self._stale(request.headers.get("X-Slack-Request-Timestamp", ""))
            await asyncio.to_thread(
                self.bot.refuse_request, PLATFORM, "stale timestamp" if stale else "bad signature"
            )
            return web.json_response({"error": "invalid request"}, status=401)
        bolt_request = await to_bolt_request(request)
        form = dict(parse_qsl(body, keep_blank_values=True))
        if not body.startswith("{") and "payload" in body and "payload" not in form:
            # slack-bolt 1.30 takes any form body mentioning "payload" for an interactive
            # payload, so "/rounds note INC-3 payload pump failed" would be dropped.
            bolt_request.body = form
            bolt_request.context = build_async_context(AsyncBoltContext({}), form)
        bolt_response = await self.bolt.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    @staticmethod
    def _stale(timestamp: str) -> bool:
        try:
            return abs(time.time() - int(timestamp)) > 60 * 5
        except ValueError:
            return False

    # --- listeners -----------------------------------------------------------------

    def _register(self) -> None:
        bolt = self.bolt

        @bolt.middleware
        async def note_event(next_: Any) -> None:
            self.last_event_at = time.monotonic()
            await next_()

        bolt.command(self.section.command)(self._on_command)
        bolt.action(re.compile(rf"^{kit.ACTION_ID}_\d+$"))(self._on_button)
        bolt.view(REPORT_VIEW)(self._on_report_view)
        bolt.view(RESOLVE_VIEW)(self._on_resolve_view)
        bolt.event("app_mention")(self._on_mention)
        bolt.event("message")(self._on_message)
        bolt.event("app_home_opened")(self._on_home)

    async def _on_command(self, ack: Any, body: dict, respond: Any) -> None:
        await ack()
        user, channel, text = body["user_id"], body["channel_id"], body.get("text", "")
        name, args = split_command(text)
        if name == "report" and not args:
            await self._open_report_view(body["trigger_id"], channel)
            return
        await self._answer_privately(channel, user, text or "help", respond)

    async def _on_button(self, ack: Any, body: dict, respond: Any) -> None:
        await ack()
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        message_ts = (body.get("container") or {}).get("message_ts", "")
        command = body["actions"][0]["value"]
        name, args = split_command(command)
        if name == "resolve" and len(args.split()) == 1 and body.get("trigger_id"):
            # The form must open within the trigger's three seconds: before any database
            # work. Submitting it twice is harmless (the second is refused as resolved).
            await self._open_resolve_view(body["trigger_id"], channel, args)
            return
        key = f"slack:press:{user}:{message_ts}:{command}"
        if not await asyncio.to_thread(
            first_time, self.bot.db, key, self.bot.env.now(), DOUBLE_CLICK
        ):
            log.info("slack double click ignored user=%s", user)
            return
        await self._answer_privately(channel, user, command, respond)

    async def _on_report_view(self, ack: Any, body: dict, view: dict) -> None:
        raw = {step: _state_value(view, step) for step in form_steps.STEPS[:-1]}
        answers, errors = form_steps.check_answers(self.bot.env, raw)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        user = body["user"]["id"]
        channel = view.get("private_metadata") or user
        inbound = Inbound(PLATFORM, person_for(self.bot, user), "", chat=channel)
        replies = await self.bot.run(
            inbound, "report", lambda ctx: form_steps.file_answers(ctx, answers)
        )
        await self._direct(user, replies)  # a modal has no reply URL: tell them in the DM

    async def _on_resolve_view(self, ack: Any, body: dict, view: dict) -> None:
        text = (_state_value(view, "resolution") or "").strip()
        if not text:
            await ack(
                response_action="errors",
                errors={"resolution": self.bot.env.words.t("slack.resolution_needed")},
            )
            return
        await ack()
        _, ref = (view.get("private_metadata") or "|").split("|", 1)
        user = body["user"]["id"]
        inbound = Inbound(PLATFORM, person_for(self.bot, user), f"resolve {ref} {text}", chat=user)
        await self._direct(user, await self.bot.handle(inbound))

    async def _on_mention(self, body: dict, event: dict) -> None:
        if not await self._first_delivery(body):
            return
        text = decode(MENTION.sub("", event.get("text", "")))
        await self._answer_privately(event["channel"], event["user"], text)

    async def _on_message(self, body: dict, event: dict) -> None:
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
            return  # edits, joins and the bot's own messages are not commands
        if not await self._first_delivery(body):
            return
        person = person_for(self.bot, event["user"])
        replies = await self.bot.handle(
            Inbound(PLATFORM, person, decode(event.get("text", "")), chat=event["channel"])
        )
        for reply in replies:
            await self._call(
                "chat_postMessage",
                channel=event["channel"],
                text=kit.fallback_text(reply),
                blocks=kit.blocks(reply),
            )

    async def _on_home(self, event: dict) -> None:
        user = event["user"]
        person = person_for(self.bot, user)
        blocks: list[dict] = []
        for command in ("incidents mine", "oncall"):
            for reply in await self.bot.handle(Inbound(PLATFORM, person, command, chat="home")):
                blocks.extend(kit.blocks(reply))
                blocks.append({"type": "divider"})
        await self._call(
            "views_publish",
            user_id=user,
            view={"type": "home", "blocks": blocks[: kit.MAX_BLOCKS]},
        )

    # --- replies -------------------------------------------------------------------

    async def _first_delivery(self, body: dict) -> bool:
        event_id = body.get("event_id")
        if not event_id:
            return True
        fresh = await asyncio.to_thread(
            first_time, self.bot.db, f"slack:event:{event_id}", self.bot.env.now(), RETRIED_EVENT
        )
        if not fresh:
            log.info("slack event already handled event_id=%s", event_id)
        return fresh

    async def _answer_privately(
        self, channel: str, user: str, text: str, respond: Any = None
    ) -> None:
        inbound = Inbound(PLATFORM, person_for(self.bot, user), text, chat=channel)
        replies = await self.bot.handle(inbound)
        if respond is None:
            await self._deliver_privately(channel, user, replies)
            return
        for reply in replies:
            # The response URL reaches the person wherever they typed, even in a channel
            # the bot was never invited to (where chat.postEphemeral would fail).
            try:
                await respond(
                    text=kit.fallback_text(reply),
                    blocks=kit.blocks(reply),
                    response_type="ephemeral",
                    replace_original=False,
                )
            except (TimeoutError, SlackApiError, aiohttp.ClientError, OSError) as exc:
                log.warning("slack respond failed: %s", type(exc).__name__)

    async def _deliver_privately(self, channel: str, user: str, replies: list[Reply]) -> None:
        """Answers and refusals go only to the person who asked (ephemeral messages)."""
        for reply in replies:
            await self._call(
                "chat_postEphemeral",
                channel=channel,
                user=user,
                text=kit.fallback_text(reply),
                blocks=kit.blocks(reply),
            )

    async def _direct(self, user: str, replies: list[Reply]) -> None:
        for reply in replies:
            await self._call(
                "chat_postMessage",
                channel=user,
                text=kit.fallback_text(reply),
                blocks=kit.blocks(reply),
            )

    async def _call(self, method: str, **kwargs: Any) -> None:
        try:
            await getattr(self.client, method)(**kwargs)
        except (TimeoutError, SlackApiError, aiohttp.ClientError, OSError) as exc:
            log.warning("slack %s failed: %s", method, type(exc).__name__)

    # --- modals --------------------------------------------------------------------

    async def _open_report_view(self, trigger_id: str, channel: str) -> None:
        env = self.bot.env
        w = env.words

        def select(step: str) -> dict:
            options = [
                {"text": {"type": "plain_text", "text": label[:75]}, "value": value}
                for value, label in form_steps.choices(env, step)
            ]
            return {"type": "static_select", "action_id": step, "options": options[:100]}

        def text_input(step: str, multiline: bool, optional: bool) -> dict:
            return {
                "type": "input",
                "block_id": step,
                "optional": optional,
                "label": {"type": "plain_text", "text": w.t(f"slack.label_{step}")},
                "element": {"type": "plain_text_input", "action_id": step, "multiline": multiline},
            }

        blocks = [
            {
                "type": "input",
                "block_id": "system",
                "element": select("system"),
                "label": {"type": "plain_text", "text": w.t("slack.label_system")},
            },
            text_input("location", False, True),
            {
                "type": "input",
                "block_id": "impact",
                "element": select("impact"),
                "label": {"type": "plain_text", "text": w.t("slack.label_impact")},
            },
            {
                "type": "input",
                "block_id": "urgency",
                "element": select("urgency"),
                "label": {"type": "plain_text", "text": w.t("slack.label_urgency")},
            },
            text_input("description", True, False),
        ]
        view = {
            "type": "modal",
            "callback_id": REPORT_VIEW,
            "private_metadata": channel,
            "title": {"type": "plain_text", "text": w.t("slack.report_title")},
            "submit": {"type": "plain_text", "text": w.t("form.confirm")},
            "close": {"type": "plain_text", "text": w.t("form.cancel")},
            "blocks": blocks,
        }
        await self._call("views_open", trigger_id=trigger_id, view=view)

    async def _open_resolve_view(self, trigger_id: str, channel: str, ref: str) -> None:
        w = self.bot.env.words
        view = {
            "type": "modal",
            "callback_id": RESOLVE_VIEW,
            "private_metadata": f"{channel}|{ref}",
            "title": {"type": "plain_text", "text": w.t("slack.resolve_title")},
            "submit": {"type": "plain_text", "text": w.t("button.resolve")},
            "blocks": [
                {
                    "type": "input",
                    "block_id": "resolution",
                    "label": {
                        "type": "plain_text",
                        "text": w.t("slack.label_resolution", ref=ref)[:150],
                    },
                    "element": {
                        "type": "plain_text_input",
                        "action_id": "resolution",
                        "multiline": True,
                    },
                }
            ],
        }
        await self._call("views_open", trigger_id=trigger_id, view=view)


def _state_value(view: dict, block_id: str) -> str | None:
    """The value a person entered or picked in one input block of a submitted modal."""
    element = next(
        iter((view.get("state", {}).get("values", {}).get(block_id) or {}).values()), None
    )
    if element is None:
        return None
    if element.get("selected_option"):
        return element["selected_option"]["value"]
    return element.get("value")
