"""A fake Slack Web API on 127.0.0.1, for tests that drive the real slack_sdk and slack_bolt.

``FakeSlack`` runs an aiohttp server in a background thread with its own event loop, so a
plain synchronous test and a test running its own loop (``asyncio.run``, a bot thread) can
both point ``AsyncWebClient(token=..., base_url=fake.base_url)`` at it. It speaks the
subset of the Web API that Rounds calls, keeps the resulting state (messages per channel,
ephemerals, views), records every call, and can be told to fail the next calls of a method
(HTTP 429 with Retry-After, HTTP 500, or ``ok: false`` with an error code).

The other direction, Slack calling Rounds, is covered by ``sign()`` and the ``*_body()``
builders: realistic slash-command, block-actions, view-submission and event payloads,
signed the way Slack signs them, to feed to a bolt app in HTTP mode.

How slack_sdk 3.48 talks to the server, which the fake follows:

* the URL is ``urljoin(base_url, method)``; the client appends a missing trailing slash to
  ``base_url``, so ``.../api`` and ``.../api/`` both work (``base_url`` here has the slash);
* the token travels as ``Authorization: Bearer <token>`` (a ``token`` field is only honoured
  in form bodies, as on Slack: never in a JSON body);
* chat.*, views.* send a JSON body; auth.test and conversations.open send *no body* but put
  their arguments in the query string of a POST; ``api_call(..., data=...)`` sends a form,
  where ``blocks``/``view``/``attachments`` arrive as JSON strings (decoded here);
* a response that is not HTTP 200 with ``"ok": true`` raises ``SlackApiError``. By default
  AsyncWebClient retries only connection errors, so a 429 raises at once; with
  ``AsyncRateLimitErrorRetryHandler`` it sleeps Retry-After plus up to 1 s and tries again;
* the client reads HTTPS_PROXY/HTTP_PROXY from the environment and passes the proxy
  explicitly, ignoring NO_PROXY: a proxy variable set in CI would route 127.0.0.1 through it.
  ``FakeSlack.client()`` clears the proxy on the client it returns.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.loopback import LoopbackServer

JSON_FIELDS = ("blocks", "attachments", "view", "metadata")  # JSON strings inside forms


@dataclass(frozen=True)
class Call:
    """One request the fake received: ``at`` is time.monotonic() on arrival."""

    method: str
    args: dict[str, Any]
    at: float
    status: int = 200
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class _Failure:
    status: int
    error: str
    retry_after: int | None


class SlackError(Exception):
    """Raised by a method handler to answer ``{"ok": false, "error": <code>}``."""


def sign(signing_secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack adds to a request it sends to an app (v0 HMAC-SHA256 signature)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(
        signing_secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256
    ).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


class FakeSlack(LoopbackServer):
    """A local Slack Web API: ``with FakeSlack() as fake: AsyncWebClient(base_url=...)``."""

    label = "Slack"

    def __init__(
        self,
        token: str = "xoxb-rounds-test",
        *,
        team_id: str = "T1",
        team_domain: str = "rounds-test",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        app_id: str = "A1",
    ) -> None:
        self.token = token
        self.team_id, self.team_domain = team_id, team_domain
        self.bot_user_id, self.bot_id, self.app_id = bot_user_id, bot_id, app_id
        self._lock = threading.Lock()
        super().__init__()
        self.reset()
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "views.open": self._views_open,
            "views.publish": self._views_publish,
            "conversations.open": self._conversations_open,
        }

    # ----------------------------------------------------------------- lifecycle

    def reset(self) -> None:
        """Forget all calls, messages, views and pending failures."""
        with self._lock:
            self._calls: list[Call] = []
            self._messages: dict[str, list[dict[str, Any]]] = {}
            self._ephemerals: list[dict[str, Any]] = []
            self._opened: list[dict[str, Any]] = []
            self._published: list[dict[str, Any]] = []
            self._failures: dict[str, deque[_Failure]] = {}
            self._ts = itertools.count(1)
            self._ids = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/hooks/response/{n}", self._response_url)

    @property
    def base_url(self) -> str:
        """What ``AsyncWebClient(base_url=...)`` needs: ``http://127.0.0.1:PORT/api/``."""
        return self.url + "/api/"

    def client(self, **kwargs: Any):
        """A real AsyncWebClient wired to this server (and to no proxy from the env)."""
        from slack_sdk.web.async_client import AsyncWebClient

        client = AsyncWebClient(
            token=kwargs.pop("token", self.token), base_url=self.base_url, **kwargs
        )
        client.proxy = None
        return client

    # ------------------------------------------------------------ failure control

    def fail(
        self,
        method: str,
        status: int | None = None,
        retry_after: int = 1,
        times: int = 1,
        error: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail, without changing state.

        No status and no error: HTTP 429, ``Retry-After: retry_after``, error "ratelimited".
        ``status=500`` (any 5xx): that status with a text/plain body. ``error="..."``
        alone: HTTP 200 with ``{"ok": false, "error": ...}``.
        """
        if status is None:
            status = 200 if error else 429
        failure = _Failure(status, error or "ratelimited", retry_after if status == 429 else None)
        with self._lock:
            self._failures.setdefault(method, deque()).extend([failure] * times)

    # --------------------------------------------------------------- inspection

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Current messages (after updates) of a channel, or of a user's DM, in post order.

        Each is ``{"ts", "text", "blocks", "thread_ts"}`` (None where absent).
        """
        channel = self._dm(channel)
        with self._lock:
            return copy.deepcopy(self._messages.get(channel, []))

    def ephemerals(self, user: str | None = None) -> list[dict[str, Any]]:
        """``{"channel", "user", "text", "blocks", "thread_ts", "message_ts"}`` per ephemeral."""
        with self._lock:
            found = [e for e in self._ephemerals if user is None or e["user"] == user]
            return copy.deepcopy(found)

    def views_opened(self) -> list[dict[str, Any]]:
        """The views as views.open returned them (with "id"), plus the "trigger_id" used."""
        with self._lock:
            return copy.deepcopy(self._opened)

    def views_published(self, user_id: str | None = None) -> list[dict[str, Any]]:
        """``{"user_id", "view"}`` per successful views.publish."""
        with self._lock:
            found = [p for p in self._published if user_id is None or p["user_id"] == user_id]
            return copy.deepcopy(found)

    def describe(self, call: Call) -> str:
        failed = f"FAILED {call.error} " if call.error else ""
        return f"  {call.method} {failed}{call.args}"

    # ------------------------------------------------------------------- server

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        at = time.monotonic()
        try:
            args, form_token = await _read_args(request)
        except ValueError:
            return self._answer(Call(method, {}, at, error="invalid_json"))
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else form_token
        with self._lock:
            failure = self._next_failure(method)
        if failure is not None:
            return self._answer(Call(method, args, at, failure.status, failure.error), failure)
        handler = self._handlers.get(method)
        if handler is None:
            return self._answer(Call(method, args, at, error="unknown_method"))
        if not token:
            return self._answer(Call(method, args, at, error="not_authed"))
        if token != self.token:
            return self._answer(Call(method, args, at, error="invalid_auth"))
        try:
            with self._lock:
                result = handler(args)
        except SlackError as e:
            return self._answer(Call(method, args, at, error=str(e)))
        self._record(Call(method, args, at))
        return web.json_response({"ok": True, **result})

    async def _response_url(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        try:
            args, _ = await _read_args(request)
        except ValueError:
            return self._answer(Call("response_url", {}, at, 400, "invalid_payload"))
        args["_hook"] = int(request.match_info["n"])
        with self._lock:
            failure = self._next_failure("response_url")
        if failure is not None:
            call = Call("response_url", args, at, failure.status, failure.error)
            return self._answer(call, failure)
        self._record(Call("response_url", args, at))
        return web.Response(text="ok", content_type="text/plain")

    def _next_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        return queue.popleft() if queue else None

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def _answer(self, call: Call, failure: _Failure | None = None) -> web.StreamResponse:
        self._record(call)
        if call.status >= 500:
            return web.Response(status=call.status, text=f"{call.status} Server Error")
        headers = {}
        if failure is not None and failure.retry_after is not None:
            headers["Retry-After"] = str(failure.retry_after)
        body = {"ok": False, "error": call.error}
        return web.json_response(body, status=call.status, headers=headers)

    # --------------------------------------------------------- method handlers
    # Called with the lock held; raise SlackError for an ``ok: false`` answer.

    def _next_ts(self) -> str:
        micros = 1_700_000_000_000_000 + 100 * next(self._ts)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _dm(self, channel: str) -> str:
        return "D" + channel if channel[:1] in ("U", "W") else channel

    def _channel(self, args: dict[str, Any]) -> str:
        channel = str(args.get("channel") or "")
        if channel[:1] not in ("C", "G", "D", "U", "W"):
            raise SlackError("channel_not_found")
        return self._dm(channel)

    @staticmethod
    def _content(args: dict[str, Any]) -> dict[str, Any]:
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            raise SlackError("no_text")
        return {"text": args.get("text", ""), "blocks": args.get("blocks")}

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": "Rounds Test",
            "user": "rounds",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        message = {
            "ts": self._next_ts(),
            **self._content(args),
            "thread_ts": args.get("thread_ts"),
        }
        self._messages.setdefault(channel, []).append(message)
        reply = {"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id}
        reply.update({k: v for k, v in message.items() if v is not None})
        return {"channel": channel, "ts": message["ts"], "message": reply}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel") or ""), args.get("ts")
        found = [m for m in self._messages.get(channel, []) if m["ts"] == ts]
        if not found:
            raise SlackError("message_not_found")
        message = found[0]
        for field in ("text", "blocks"):  # as on Slack: omitted fields are kept
            if field in args:
                message[field] = args[field]
        shown = {k: v for k, v in message.items() if v is not None}
        return {"channel": channel, "ts": ts, "text": message["text"], "message": shown}

    def _post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        if not args.get("user"):
            raise SlackError("user_not_found")
        ephemeral = {
            "channel": channel,
            "user": args["user"],
            **self._content(args),
            "thread_ts": args.get("thread_ts"),
            "message_ts": self._next_ts(),
        }
        self._ephemerals.append(ephemeral)
        return {"message_ts": ephemeral["message_ts"]}

    def _view(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view")
        if not isinstance(view, dict) or "type" not in view:
            raise SlackError("invalid_arguments")
        view_id = f"V{next(self._ids):010d}"
        return {
            "id": view_id,
            "team_id": self.team_id,
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{view_id}",
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
            **view,
        }

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id"):
            raise SlackError("invalid_trigger_id")
        view = self._view(args)
        self._opened.append({**view, "trigger_id": args["trigger_id"]})
        return {"view": view}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("user_id"):
            raise SlackError("invalid_arguments")
        view = self._view(args)
        self._published.append({"user_id": args["user_id"], "view": view})
        return {"view": view}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("channel"):
            return {"channel": {"id": args["channel"]}}
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if not users:
            raise SlackError("users_list_not_supplied")
        channel = self._dm(users[0]) if len(users) == 1 else "G" + "".join(sorted(users))
        return {"channel": {"id": channel}}

    # --------------------------------------------------- payloads Slack sends us

    def _next_trigger(self) -> str:
        with self._lock:
            n = next(self._ids)
        return f"{n}.{self.team_id}.{hashlib.sha1(str(n).encode()).hexdigest()[:16]}"

    def _hook(self) -> str:
        with self._lock:
            n = next(self._ids)
        return f"{self.url}/hooks/response/{n}"

    def _user(self, user_id: str) -> dict[str, str]:
        name = user_id.lower()
        return {"id": user_id, "username": name, "name": name, "team_id": self.team_id}

    def slash_command_body(
        self,
        command: str,
        text: str,
        user_id: str,
        channel_id: str,
        trigger_id: str | None = None,
    ) -> str:
        """A form-encoded slash command; its response_url points at this server."""
        return urlencode(
            {
                "token": "verification-token",
                "team_id": self.team_id,
                "team_domain": self.team_domain,
                "channel_id": channel_id,
                "channel_name": channel_id.lower(),
                "user_id": user_id,
                "user_name": user_id.lower(),
                "command": command,
                "text": text,
                "api_app_id": self.app_id,
                "is_enterprise_install": "false",
                "response_url": self._hook(),
                "trigger_id": trigger_id or self._next_trigger(),
            }
        )

    def block_actions_body(
        self,
        user_id: str,
        channel_id: str,
        message_ts: str,
        action_id: str,
        value: str,
        trigger_id: str | None = None,
    ) -> str:
        """``payload=<json>`` for a button click on a message (taken from this fake if known)."""
        message = next(
            (m for m in self.messages(channel_id) if m["ts"] == message_ts),
            {"ts": message_ts, "text": "", "blocks": None, "thread_ts": None},
        )
        block_id = next(
            (
                block.get("block_id", "")
                for block in message["blocks"] or []
                for element in block.get("elements", [block.get("accessory") or {}])
                if element.get("action_id") == action_id
            ),
            "actions",
        )
        shown = {"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id}
        shown.update({k: v for k, v in message.items() if v is not None})
        payload = {
            "type": "block_actions",
            "user": self._user(user_id),
            "api_app_id": self.app_id,
            "token": "verification-token",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel_id,
                "is_ephemeral": False,
            },
            "trigger_id": trigger_id or self._next_trigger(),
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel_id, "name": channel_id.lower()},
            "message": shown,
            "state": {"values": {}},
            "response_url": self._hook(),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id,
                    "text": {"type": "plain_text", "text": value, "emoji": True},
                    "value": value,
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        return urlencode({"payload": json.dumps(payload)})

    def view_submission_body(
        self,
        user_id: str,
        callback_id: str,
        values: dict[str, dict[str, Any]],
        private_metadata: str | None = None,
    ) -> str:
        """``payload=<json>`` submitting a modal.

        ``values`` is ``{block_id: {action_id: state}}`` as in ``view.state.values``; a plain
        string state is shorthand for a plain_text_input holding it. The latest view opened
        here with that callback_id supplies id, blocks and (unless given) private_metadata.
        """
        state = {
            block: {
                action: {"type": "plain_text_input", "value": v} if isinstance(v, str) else v
                for action, v in actions.items()
            }
            for block, actions in values.items()
        }
        opened = [v for v in self.views_opened() if v.get("callback_id") == callback_id]
        if opened:
            view = opened[-1]
            view.pop("trigger_id")
        else:
            with self._lock:
                view = self._view({"view": {"type": "modal", "blocks": []}})
        view.update(callback_id=callback_id, state={"values": state})
        if private_metadata is not None:
            view["private_metadata"] = private_metadata
        payload = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": self.team_domain},
            "user": self._user(user_id),
            "api_app_id": self.app_id,
            "token": "verification-token",
            "trigger_id": self._next_trigger(),
            "view": view,
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return urlencode({"payload": json.dumps(payload)})

    def event_body(
        self, event: dict[str, Any], event_id: str | None = None, team_id: str | None = None
    ) -> str:
        """A JSON ``event_callback`` envelope around ``event`` (give it at least "type")."""
        team_id = team_id or self.team_id
        with self._lock:
            n = next(self._ids)
        return json.dumps(
            {
                "token": "verification-token",
                "team_id": team_id,
                "api_app_id": self.app_id,
                "event": {"event_ts": f"{time.time():.6f}", **event},
                "type": "event_callback",
                "event_id": event_id or f"Ev{n:010d}",
                "event_time": int(time.time()),
                "authorizations": [
                    {
                        "enterprise_id": None,
                        "team_id": team_id,
                        "user_id": self.bot_user_id,
                        "is_bot": True,
                        "is_enterprise_install": False,
                    }
                ],
                "is_ext_shared_channel": False,
                "event_context": f"4-{n}",
            }
        )


async def _read_args(request: web.Request) -> tuple[dict[str, Any], str | None]:
    """Query string plus body (JSON, or a form whose JSON fields are decoded).

    Returns the arguments and a ``token`` field if the query or a form carried one (Slack
    ignores one in a JSON body). Raises ValueError
    for a malformed JSON body.
    """
    args: dict[str, Any] = dict(request.query)
    form_token = args.pop("token", None)
    if request.content_type == "application/json":
        text = await request.text()
        body = json.loads(text) if text else {}
        if not isinstance(body, dict):
            raise ValueError("JSON body is not an object")
        args.update(body)
        args.pop("token", None)
    elif request.can_read_body:
        form = dict(await request.post())
        if "payload" in form and len(form) == 1:  # response_url/interactive style
            form = json.loads(str(form["payload"]))
        form_token = form.pop("token", None) or form_token
        args.update(form)
    for field in JSON_FIELDS:
        value = args.get(field)
        if isinstance(value, str) and value[:1] in ("[", "{"):
            args[field] = json.loads(value)
    return args, form_token
