"""Scheduled jobs.

APScheduler's job store keeps a job as a reference (``module:function``) with plain
arguments, so each job is a module-level function; it finds the running bot through
:func:`bind`, which the bot calls before it starts the scheduler. Each job re-reads and
locks what it acts on, and logs one line saying what it did or why it did nothing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Protocol

from rounds.bot.dedup import forget_before
from rounds.bot.dispatcher import prune
from rounds.db.engine import Database
from rounds.itsm import escalation, forms, incidents
from rounds.itsm.context import Env

log = logging.getLogger(__name__)


class Runtime(Protocol):
    db: Database
    env: Env

    def wake_dispatcher(self) -> None: ...


_runtime: Runtime | None = None


def bind(runtime: Runtime | None) -> None:
    """Make ``runtime`` the bot the jobs act for (None unbinds)."""
    global _runtime
    _runtime = runtime


def _bound() -> Runtime:
    if _runtime is None:
        raise RuntimeError("scheduled job ran before the bot was bound")
    return _runtime


def escalate_step(runtime: Runtime) -> list[escalation.Escalated]:
    """Take every due escalation step, in one transaction."""
    with runtime.db.session() as session:
        return escalation.escalate_due(session, runtime.env)


def close_resolved(runtime: Runtime) -> list[str]:
    """Close incidents resolved longer ago than ``[incidents] auto_close_hours``."""
    hours = runtime.env.config.incidents.auto_close_hours
    if hours <= 0:
        return []
    with runtime.db.session() as session:
        return incidents.close_stale_resolved(session, runtime.env, hours)


def expire_forms(runtime: Runtime) -> list[forms.Owner]:
    """Drop forms left unanswered too long; their owners are told."""
    with runtime.db.session() as session:
        return forms.expire(session, runtime.env)


def prune_old_rows(runtime: Runtime) -> tuple[int, int]:
    """Drop delivered messages and inbound keys older than the configured days."""
    now = runtime.env.now()
    keep = timedelta(days=runtime.env.config.outbox.keep_days)
    return prune(runtime.db, now - keep), forget_before(runtime.db, now - keep)


async def escalate_incidents() -> None:
    """Job ``escalate-incidents``."""
    runtime = _bound()
    steps = await asyncio.to_thread(escalate_step, runtime)
    if not steps:
        log.debug("job=escalate-incidents nothing due")
        return
    log.info("job=escalate-incidents steps=%d", len(steps))
    runtime.wake_dispatcher()


async def close_resolved_incidents() -> None:
    """Job ``close-resolved-incidents``."""
    runtime = _bound()
    closed = await asyncio.to_thread(close_resolved, runtime)
    if not closed:
        log.debug("job=close-resolved-incidents nothing due")
        return
    log.info("job=close-resolved-incidents closed=%d", len(closed))
    runtime.wake_dispatcher()


async def expire_abandoned_forms() -> None:
    """Job ``expire-abandoned-forms``."""
    runtime = _bound()
    dropped = await asyncio.to_thread(expire_forms, runtime)
    if not dropped:
        log.debug("job=expire-abandoned-forms nothing due")
        return
    log.info("job=expire-abandoned-forms dropped=%d", len(dropped))
    runtime.wake_dispatcher()


async def prune_delivered_rows() -> None:
    """Job ``prune-delivered-rows``."""
    runtime = _bound()
    messages, keys = await asyncio.to_thread(prune_old_rows, runtime)
    log.info("job=prune-delivered-rows messages=%d inbound_keys=%d", messages, keys)
