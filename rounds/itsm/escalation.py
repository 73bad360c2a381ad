"""Escalation (升级): an incident nobody acknowledges in time goes up, one step per window.

Step 1 pages the next engineer on the rota; step 2 tells the managers channel. Each step
waits the priority's acknowledgement window again. The step and the time of the next one
live on the incident, so a restart neither forgets nor repeats a step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from rounds.db.models import Incident
from rounds.itsm import audit, notify
from rounds.itsm.context import Env
from rounds.itsm.paging import page
from rounds.reply import Button, Reply

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "rounds"
LAST_STEP = 2


@dataclass(frozen=True)
class Escalated:
    ref: str
    step: int
    target: str


def ack_window(env: Env, priority: str) -> timedelta:
    return timedelta(minutes=env.config.escalation.ack_minutes[priority])


def start_clock(env: Env, incident: Incident, now: datetime) -> None:
    """(Re)start escalation: the first step falls due one window from now."""
    incident.escalation_step = 0
    incident.escalate_at = now + ack_window(env, incident.priority)


def stop_clock(incident: Incident) -> None:
    incident.escalate_at = None


def escalate_due(session: Session, env: Env, limit: int = 100) -> list[Escalated]:
    """Take one step for every open incident whose escalation is due; return the steps.

    The rows are locked while the step is taken (``FOR UPDATE SKIP LOCKED`` on
    PostgreSQL, the write lock of ``BEGIN IMMEDIATE`` on SQLite), so two schedulers never
    take the same step.
    """
    now = env.now()
    query = (
        select(Incident)
        .where(Incident.status == "open", Incident.escalate_at <= now)
        .order_by(Incident.escalate_at, Incident.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    done: list[Escalated] = []
    for incident in session.scalars(query):
        step = incident.escalation_step + 1
        target = _take_step(session, env, incident, step)
        incident.escalation_step = step
        incident.escalate_at = (
            now + ack_window(env, incident.priority) if step < LAST_STEP else None
        )
        audit.record(
            session,
            at=now,
            actor=SYSTEM_ACTOR,
            action="escalate",
            record=incident.ref,
            via="scheduler",
            detail=f"step {step} -> {target}",
        )
        done.append(Escalated(incident.ref, step, target))
    return done


def _take_step(session: Session, env: Env, incident: Incident, step: int) -> str:
    w = env.words
    minutes = f"{env.config.escalation.ack_minutes[incident.priority]:g}"
    duty = env.rota.on_duty(env.now())
    backup = env.rota.next_after(duty) if step == 1 else None
    if backup is not None:
        page(session, env, incident, backup, escalated=True)
        line = w.t("escalation.thread_engineer", who=env.people.label(backup), minutes=minutes)
        target = backup
    else:
        notify.notify(
            session,
            env,
            notify.channel("managers"),
            Reply(
                w.t(
                    "escalation.managers",
                    ref=incident.ref,
                    priority=incident.priority,
                    title=incident.title,
                    minutes=minutes,
                    duty=env.people.label(duty),
                ),
                buttons=[Button(w.t("button.ack"), f"ack {incident.ref}", "primary")],
            ),
        )
        line = w.t("escalation.thread_managers")
        target = "channel:managers"
    notify.notify(
        session,
        env,
        notify.channel("ops"),
        Reply(f"{incident.ref} · {line}"),
        thread_key=f"incident:{incident.id}",
    )
    log.info("escalated incident=%s step=%s target=%s", incident.ref, step, target)
    return target
