"""From inbound text to replies: clean, parse, run the command in one transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from rounds import commands
from rounds.commands import REGISTRY, Context, closest, split_command
from rounds.commands import forms as form_steps
from rounds.db.engine import Database
from rounds.itsm import attachments, audit, forms
from rounds.itsm.context import Env
from rounds.itsm.errors import RoundsError
from rounds.itsm.forms import Owner
from rounds.itsm.people import Person
from rounds.reply import Reply
from rounds.text import clean_inbound, compile_rules

from . import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inbound:
    """A message from a person, in the platform-neutral form every transport produces."""

    transport: str
    person: Person
    text: str
    # The conversation (a DM, a group, the console), so that a form in one chat does not
    # capture what the same person types in another.
    chat: str = ""
    # Photos the transport downloaded and stored with this message (relative paths).
    photos: tuple[str, ...] = ()
    # Whether the platform lets people send pictures in this chat.
    accepts_photos: bool = False


class Bot:
    """Handles inbound messages; a transport calls :meth:`handle` and renders the replies."""

    def __init__(self, env: Env, db: Database, on_commit: Callable[[], None] | None = None):
        commands.load_all()
        self.env = env
        self.db = db
        self.on_commit = on_commit
        self._mask_rules = compile_rules((p.name, p.regex) for p in env.config.privacy.patterns)

    async def handle(self, inbound: Inbound) -> list[Reply]:
        """Handle one message in a worker thread; wake the dispatcher afterwards."""
        replies = await asyncio.to_thread(self.handle_sync, inbound)
        if self.on_commit is not None:
            self.on_commit()
        return replies

    async def run(
        self, inbound: Inbound, name: str, handler: Callable[[Context], Reply | list[Reply]]
    ) -> list[Reply]:
        """Run a handler that is not a typed command (a submitted modal) like one."""
        replies = await asyncio.to_thread(self._execute, inbound, name, True, handler)
        if self.on_commit is not None:
            self.on_commit()
        return replies

    def refuse_request(self, via: str, reason: str) -> None:
        """Audit an inbound request refused before it reached any command (a bad signature)."""
        with self.db.session() as session:
            audit.record(
                session,
                at=self.env.now(),
                actor=via,
                action="request",
                record=None,
                via=via,
                result=audit.DENIED,
                detail=reason,
            )
        log.warning("request refused via=%s reason=%s", via, reason)

    def handle_sync(self, inbound: Inbound) -> list[Reply]:
        words = self.env.words
        cleaned = clean_inbound(inbound.text, self._mask_rules, words.t("privacy.placeholder"))
        notices: list[str] = []
        if cleaned.removed_controls:
            notices.append(words.t("notice.controls_removed", count=cleaned.removed_controls))
        if cleaned.masked_count:
            notices.append(words.t("notice.masked", count=cleaned.masked_count))

        replies = [Reply("\n".join(notices))] if notices else []
        form_state = self._form_state(inbound)
        if form_state == "active":
            replies.extend(
                self._execute(
                    inbound, "form", True, lambda ctx: form_steps.answer(ctx, cleaned.text)
                )
            )
            return replies
        if form_state == "expired":
            replies.append(Reply(words.t("form.expired")))

        name, args = split_command(cleaned.text)
        if not name:
            if inbound.photos:  # a photo with no report and no form asking for one
                self._discard(inbound.photos)
                replies.append(Reply(words.t("photo.unexpected"), refused=True))
            return replies
        entry = REGISTRY.get(name)
        if entry is None:
            guess = closest(name)
            key = "error.unknown_command_guess" if guess else "error.unknown_command"
            metrics.COMMANDS.labels("unknown", "invalid").inc()
            return [*replies, Reply(words.t(key, name=name[:40], guess=guess or ""), refused=True)]
        replies.extend(self._execute(inbound, name, entry.write, entry.handler, args))
        return replies

    def _discard(self, photos: tuple[str, ...]) -> None:
        for relative in photos:
            with contextlib.suppress(OSError, ValueError):
                attachments.path_of(self.env, relative).unlink()

    def _form_state(self, inbound: Inbound) -> str | None:
        """ "active", "expired" (and now dropped) or None for this person in this chat."""
        owner = Owner(inbound.transport, inbound.chat, inbound.person.name)
        with self.db.session(write=False) as session:
            if forms.get(session, owner) is None:
                return None
        with self.db.session() as session:
            return forms.state(session, self.env, owner)

    def _execute(
        self,
        inbound: Inbound,
        name: str,
        write: bool,
        handler: Callable[[Context], Reply | list[Reply]],
        args: str = "",
    ) -> list[Reply]:
        """Run one handler in one transaction; expected errors become sentences."""
        words = self.env.words
        started = time.perf_counter()
        outcome = "ok"
        ctx: Context | None = None
        try:
            with self.db.session(write=write) as session:
                ctx = Context(
                    self.env,
                    session,
                    inbound.person,
                    inbound.transport,
                    args,
                    chat=inbound.chat,
                    photos=inbound.photos,
                    accepts_photos=inbound.accepts_photos,
                )
                try:
                    result = handler(ctx)
                except RoundsError as exc:
                    # Expected: the session still commits, keeping the audit of a refusal.
                    outcome = type(exc).__name__.lower()
                    result = Reply(words.t(exc.key, **exc.params), refused=True)
        except Exception:
            token = secrets.token_hex(4)
            log.exception(
                "command failed token=%s command=%s person=%s via=%s",
                token,
                name,
                inbound.person.name,
                inbound.transport,
            )
            outcome = "error"
            result = Reply(words.t("error.unexpected", token=token), refused=True)

        if inbound.photos and (ctx is None or not ctx.photos_taken):
            self._discard(inbound.photos)  # nothing kept them: no photo lies about unrecorded
        elapsed = time.perf_counter() - started
        metrics.COMMANDS.labels(name, outcome).inc()
        metrics.COMMAND_SECONDS.observe(elapsed)
        log.info(
            "command=%s person=%s via=%s outcome=%s ms=%.1f",
            name,
            inbound.person.name,
            inbound.transport,
            outcome,
            elapsed * 1000,
        )
        return result if isinstance(result, list) else [result]
