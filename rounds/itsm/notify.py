"""Notifications: the domain records messages in the outbox, in the same transaction.

A destination is a channel (``channel:ops``) or a person (``person:eng.wang``). Each active
platform gets its own row, so a platform that is down delays only its own messages.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from rounds.db.models import OutboxMessage
from rounds.itsm.context import Env
from rounds.reply import Reply

log = logging.getLogger(__name__)


def channel(name: str) -> str:
    return f"channel:{name}"


def person(name: str) -> str:
    return f"person:{name}"


def address_for(env: Env, platform: str, destination: str) -> str | None:
    """The platform's address of a destination, or None when it has none there."""
    kind, _, name = destination.partition(":")
    if platform == "console":
        return f"#{name}" if kind == "channel" else f"@{name}"
    if kind == "channel":
        entry = env.config.channels.get(name)
        value = getattr(entry, platform, None) if entry else None
    else:
        who = env.people.get(name)
        value = getattr(who, platform, None) if who else None
        if who is None and name.startswith(f"{platform}."):
            # Someone not in [[people]] who wrote to us from this platform: named after
            # their platform id (slack.u0123abc is Slack's U0123ABC).
            value = name.removeprefix(f"{platform}.").upper()
    return str(value) if value is not None else None


def notify(
    session: Session,
    env: Env,
    destination: str,
    message: Reply,
    *,
    ref_key: str | None = None,
    thread_key: str | None = None,
) -> int:
    """Queue ``message`` as a new post; return how many platform rows were written.

    ``ref_key`` names the post so that later edits find it; ``thread_key`` posts it as a
    reply under the message with that key.
    """
    return _queue(session, env, destination, message, "post", ref_key, thread_key)


def update(session: Session, env: Env, destination: str, message: Reply, *, ref_key: str) -> int:
    """Queue an edit of the post named ``ref_key``; it waits until that post is sent."""
    return _queue(session, env, destination, message, "edit", ref_key, None)


def _queue(
    session: Session,
    env: Env,
    destination: str,
    message: Reply,
    op: str,
    ref_key: str | None,
    thread_key: str | None,
) -> int:
    now = env.now()
    written = 0
    for platform in env.routes.platforms:
        address = address_for(env, platform, destination)
        if address is None:
            log.warning("no address platform=%s destination=%s", platform, destination)
            continue
        session.add(
            OutboxMessage(
                platform=platform,
                address=address,
                op=op,
                ref_key=ref_key,
                thread_key=thread_key,
                payload=message.to_dict(),
                status="pending",
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )
        written += 1
    return written
