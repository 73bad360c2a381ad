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

from rounds.db.models import OPEN, Incident, IncidentPage
from rounds.itsm import audit, notify
from rounds.itsm.cards import card_key
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
        .where(Incident.status == OPEN, Incident.escalate_at <= now)
        .order_by(Incident.escalate_at, Incident.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    done: list[Escalated] = []
    for incident in session.scalars(query):
        step = incident.escalation_step + 1
        backup = _backup(session, env, incident) if step == 1 else None
        if backup is not None:
            _page_backup(session, env, incident, backup)
            target = backup
        else:
            _tell_managers(session, env, incident, step)
            target = "channel:managers"
        incident.escalation_step = step
        # After the managers are told, the bot stops: they own it from there.
        last = backup is None or step >= LAST_STEP
        incident.escalate_at = None if last else now + ack_window(env, incident.priority)
        audit.record(
            session,
            at=now,
            actor=SYSTEM_ACTOR,
            action="escalate",
            record=incident.ref,
            via="scheduler",
            detail=f"step={step} target={target}",
        )
        log.info("escalated incident=%s step=%s target=%s", incident.ref, step, target)
        done.append(Escalated(incident.ref, step, target))
    return done


def _backup(session: Session, env: Env, incident: Incident) -> str | None:
    """Whom to page when nobody acknowledged: someone on the rota not yet paged about it.

    The engineer on duty now comes first (a handover may have happened since the report),
    then the rota in order after them; never the reporter, the assignee, or anyone paged
    about this incident since its escalation clock last started.
    """
    # Pages since the escalation clock last started (a reopen starts it again).
    since = incident.escalate_at - ack_window(env, incident.priority)
    paged = set(
        session.scalars(
            select(IncidentPage.person).where(
                IncidentPage.incident_id == incident.id, IncidentPage.at >= since
            )
        )
    )
    skip = paged | {incident.reporter, incident.assignee}
    duty = env.rota.on_duty(env.now())
    for name in [duty, *env.rota.after(duty)]:
        if name is not None and name not in skip:
            return name
    return None


def _page_backup(session: Session, env: Env, incident: Incident, backup: str) -> None:
    minutes = f"{env.config.escalation.ack_minutes[incident.priority]:g}"
    page(session, env, incident, backup, escalated=True)
    _thread(
        session,
        env,
        incident,
        env.words.t("escalation.thread_engineer", who=env.people.label(backup), minutes=minutes),
    )


def _tell_managers(session: Session, env: Env, incident: Incident, step: int) -> None:
    w = env.words
    # Each step falls due one acknowledgement window after the one before.
    waited = env.config.escalation.ack_minutes[incident.priority] * step
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
                minutes=f"{waited:g}",
                duty=env.people.label(env.rota.on_duty(env.now())),
            ),
            buttons=[Button(w.t("button.ack"), f"ack {incident.ref}", "primary")],
        ),
    )
    _thread(session, env, incident, w.t("escalation.thread_managers"))


def _thread(session: Session, env: Env, incident: Incident, line: str) -> None:
    notify.notify(
        session,
        env,
        notify.channel("ops"),
        Reply(f"{incident.ref} · {line}"),
        thread_key=card_key(incident),
    )
