"""Incidents (事件): report, acknowledge, assign, triage, note, resolve, reopen, close.

Every function checks the policy first, changes the incident, writes the audit entry and
queues its notifications, all in the caller's transaction, so that either all of it
happens or none of it does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from rounds.db.models import (
    ACKNOWLEDGED,
    CLOSED,
    OPEN,
    RESOLVED,
    AuditEntry,
    Incident,
    IncidentPage,
)
from rounds.itsm import audit, cards, notify
from rounds.itsm.access import Action, allowed, can_be_assigned, sees_all_incidents
from rounds.itsm.context import Env
from rounds.itsm.errors import Conflict, Denied, Invalid, NotFound
from rounds.itsm.escalation import SYSTEM_ACTOR, ack_window, start_clock, stop_clock
from rounds.itsm.paging import page
from rounds.itsm.people import Person
from rounds.itsm.priority import PRIORITIES, Assessment
from rounds.reply import Button, Reply
from rounds.text import first_line, truncate

ACTIVE = (OPEN, ACKNOWLEDGED)
SCOPES = ("open", "mine", "all")
_REF = re.compile(r"^(?:inc-?)?(\d{1,9})$", re.IGNORECASE)


@dataclass(frozen=True)
class ReportAnswers:
    """What a reporter chose in the guided form."""

    system: str
    location: str | None
    impact: str
    urgency: str


@dataclass(frozen=True)
class Reopened:
    """What ``reopen`` did: the incident, and whom it paged (None when nobody)."""

    incident: Incident
    paged: str | None


@dataclass(frozen=True)
class Filed:
    """What ``report`` did: the incident, whom it paged, and whether the text was cut."""

    incident: Incident
    duty: str | None
    truncated: bool


def assess(env: Env, text: str, answers: ReportAnswers | None = None) -> Assessment:
    """The priority a report gets, from its words and, for a guided one, its answers."""
    if answers is None:
        return env.priorities.assess(text)
    words = f"{answers.system} {answers.location or ''} {text}"
    return env.priorities.assess(words, impact=answers.impact, urgency=answers.urgency)


def parse_ref(token: str) -> int:
    """``INC-12``, ``inc-12`` or ``12`` to 12; anything else is refused with a sentence."""
    match = _REF.match(token.strip())
    if not match or int(match.group(1)) == 0:
        raise Invalid("incident.bad_ref", token=token)
    return int(match.group(1))


# --- reading ---------------------------------------------------------------------------


def view(session: Session, env: Env, viewer: Person, incident_id: int, *, via: str) -> Incident:
    incident = _load(session, incident_id)
    _authorize(session, env, viewer, Action.VIEW, incident, via)
    return incident


def timeline(session: Session, incident: Incident) -> list[AuditEntry]:
    return audit.history(session, incident.ref)


def list_incidents(
    session: Session, env: Env, viewer: Person, scope: str, limit: int
) -> tuple[list[Incident], int]:
    """The newest incidents of a scope that ``viewer`` may see, and how many there are."""
    if scope not in SCOPES:
        raise Invalid("incident.bad_scope", scope=scope)
    query = select(Incident)
    if not sees_all_incidents(viewer):
        mine = [Incident.reporter == viewer.name]
        if viewer.has("vendor"):
            mine.append(Incident.assignee == viewer.name)
        query = query.where(or_(*mine))
    if scope == "open":
        query = query.where(Incident.status.in_(ACTIVE))
    elif scope == "mine":
        query = query.where(
            or_(Incident.reporter == viewer.name, Incident.assignee == viewer.name),
            Incident.status != CLOSED,
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(session.scalars(query.order_by(Incident.id.desc()).limit(limit)))
    return rows, total


# --- changing --------------------------------------------------------------------------


def report(
    session: Session,
    env: Env,
    reporter: Person,
    text: str,
    *,
    via: str,
    answers: ReportAnswers | None = None,
) -> Filed:
    """File an incident as ``reporter``; page the duty engineer and, for a P1, the managers."""
    text = text.strip()
    if not text:
        raise Invalid("incident.empty_report")
    now = env.now()
    assessment = assess(env, text, answers)
    description, cut = truncate(
        text, env.config.incidents.max_text, env.words.t("incident.truncated_marker")
    )

    incident = Incident(
        title=first_line(description),
        description=description,
        status=OPEN,
        priority=assessment.priority,
        impact=assessment.impact,
        urgency=assessment.urgency,
        major=assessment.major,
        system=answers.system if answers else assessment.system,
        location=(answers.location if answers else None) or assessment.location,
        reporter=reporter.name,
        source=via,
        created_at=now,
    )
    start_clock(env, incident, now)
    session.add(incident)
    session.flush()
    detail = f"{incident.priority} {incident.impact}/{incident.urgency}"
    _record(
        session,
        env,
        reporter.name,
        "report",
        incident,
        via,
        detail=detail + (" major" if incident.major else ""),
    )

    notify.notify(
        session,
        env,
        notify.channel("ops"),
        cards.card(env, incident),
        ref_key=cards.card_key(incident),
    )
    duty = env.rota.on_duty(now)
    if duty is not None and duty != reporter.name:
        page(session, env, incident, duty)
    if incident.priority == "P1":
        notify.notify(session, env, notify.channel("managers"), cards.p1_notice(env, incident))
    return Filed(incident, duty, cut)


def acknowledge(
    session: Session, env: Env, actor: Person, incident_id: int | None, *, via: str
) -> Incident:
    """Take an incident; with no id, the newest open one paged to ``actor``."""
    if incident_id is None:
        incident_id = _newest_paged(session, actor.name)
    incident = _load(session, incident_id, lock=True)
    _authorize(session, env, actor, Action.ACK, incident, via)
    if incident.status == ACKNOWLEDGED:
        key = (
            "incident.you_already_acked"
            if incident.acknowledged_by == actor.name
            else "incident.already_acked"
        )
        _refuse(
            session,
            env,
            actor,
            "ack",
            incident,
            via,
            key,
            who=env.people.label(incident.acknowledged_by),
            at=env.local(incident.acknowledged_at),
        )
    if incident.status != OPEN:
        _refuse(
            session,
            env,
            actor,
            "ack",
            incident,
            via,
            "incident.not_open",
            status=env.words.t(f"status.{incident.status}"),
        )

    now = env.now()
    incident.status = ACKNOWLEDGED
    incident.acknowledged_by = actor.name
    incident.acknowledged_at = now
    incident.assignee = actor.name
    stop_clock(incident)
    _record(session, env, actor.name, "ack", incident, via)

    cards.changed(
        session,
        env,
        incident,
        env.words.t("incident.thread.acked", who=env.people.label(actor.name)),
    )
    cards.tell_reporter(session, env, incident, actor, "incident.reporter.acked")
    return incident


def assign(
    session: Session, env: Env, actor: Person, incident_id: int, assignee: str, *, via: str
) -> Incident:
    incident = _load(session, incident_id, lock=True)
    _authorize(session, env, actor, Action.ASSIGN, incident, via)
    target = env.people.get(assignee.lstrip("@"))
    if target is None:
        raise Invalid("incident.unknown_person", name=assignee)
    if not can_be_assigned(target):
        raise Invalid("incident.cannot_assign", who=target.label)
    _require_not_closed(session, env, actor, "assign", incident, via)
    if incident.assignee == target.name:
        raise Invalid("incident.already_assigned", ref=incident.ref, who=target.label)

    before = incident.assignee
    incident.assignee = target.name
    _record(
        session,
        env,
        actor.name,
        "assign",
        incident,
        via,
        detail=f"{before or '-'} -> {target.name}",
    )
    cards.changed(
        session,
        env,
        incident,
        env.words.t("incident.thread.assigned", who=env.people.label(actor.name), to=target.label),
    )
    if target.name != actor.name:
        page(session, env, incident, target.name, assigned_by=actor.name)
    return incident


def set_priority(
    session: Session, env: Env, actor: Person, incident_id: int, priority: str, *, via: str
) -> Incident:
    incident = _load(session, incident_id, lock=True)
    _authorize(session, env, actor, Action.PRIORITY, incident, via)
    priority = priority.upper()
    if priority not in PRIORITIES:
        raise Invalid("incident.bad_priority", value=priority)
    _require_not_closed(session, env, actor, "priority", incident, via)
    if incident.priority == priority:
        raise Invalid("incident.priority_same", ref=incident.ref, priority=priority)

    now = env.now()
    before = incident.priority
    incident.priority = priority
    if priority != "P1":
        incident.major = False  # a major incident is a P1; triage says this is not one
    if incident.status == OPEN and incident.escalate_at is not None:
        # The next step falls due one window of the new priority from now.
        incident.escalate_at = now + ack_window(env, priority)
    _record(session, env, actor.name, "priority", incident, via, detail=f"{before} -> {priority}")
    cards.changed(
        session,
        env,
        incident,
        env.words.t(
            "incident.thread.priority",
            who=env.people.label(actor.name),
            before=before,
            after=priority,
        ),
    )
    if priority == "P1" and incident.status in ACTIVE:
        notify.notify(session, env, notify.channel("managers"), cards.p1_notice(env, incident))
    return incident


def add_note(
    session: Session, env: Env, actor: Person, incident_id: int, text: str, *, via: str
) -> Incident:
    incident = _load(session, incident_id, lock=True)
    _authorize(session, env, actor, Action.NOTE, incident, via)
    text, _ = truncate(
        text.strip(), env.config.incidents.max_text, env.words.t("incident.truncated_marker")
    )
    if not text:
        raise Invalid("incident.note_needed", ref=incident.ref)
    _require_not_closed(session, env, actor, "note", incident, via)

    _record(session, env, actor.name, "note", incident, via, detail=text)
    notify.notify(
        session,
        env,
        notify.channel("ops"),
        Reply(
            env.words.t(
                "incident.thread.note",
                ref=incident.ref,
                who=env.people.label(actor.name),
                text=text,
            )
        ),
        thread_key=cards.card_key(incident),
    )
    return incident


def resolve(
    session: Session, env: Env, actor: Person, incident_id: int, text: str, *, via: str
) -> Incident:
    incident = _load(session, incident_id, lock=True)
    _authorize(session, env, actor, Action.RESOLVE, incident, via)
    text, _ = truncate(
        text.strip(), env.config.incidents.max_text, env.words.t("incident.truncated_marker")
    )
    if not text:
        raise Invalid("incident.resolution_needed", ref=incident.ref)
    if incident.status not in ACTIVE:
        _refuse(
            session,
            env,
            actor,
            "resolve",
            incident,
            via,
            "incident.not_active",
            status=env.words.t(f"status.{incident.status}"),
        )

    now = env.now()
    incident.status = RESOLVED
    incident.resolved_at = now
    incident.resolution = text
    stop_clock(incident)
    if incident.acknowledged_at is None:
        incident.acknowledged_at = now
        incident.acknowledged_by = actor.name
    incident.assignee = incident.assignee or actor.name
    _record(session, env, actor.name, "resolve", incident, via, detail=text)

    cards.changed(
        session,
        env,
        incident,
        env.words.t("incident.thread.resolved", who=env.people.label(actor.name), text=text),
    )
    cards.tell_reporter(
        session,
        env,
        incident,
        actor,
        "incident.reporter.resolved",
        text=text + cards.auto_close_hint(env),
        buttons=[
            Button(env.words.t("button.close"), f"close {incident.ref}", "primary"),
            Button(env.words.t("button.reopen"), f"reopen {incident.ref}"),
        ],
    )
    return incident


def reopen(
    session: Session, env: Env, actor: Person, incident_id: int, why: str, *, via: str
) -> Reopened:
    incident = _load(session, incident_id, lock=True)
    _authorize(session, env, actor, Action.REOPEN, incident, via)
    if incident.status == CLOSED:
        _refuse(session, env, actor, "reopen", incident, via, "incident.closed_final")
    if incident.status != RESOLVED:
        _refuse(
            session,
            env,
            actor,
            "reopen",
            incident,
            via,
            "incident.not_resolved",
            status=env.words.t(f"status.{incident.status}"),
        )

    now = env.now()
    incident.status = OPEN
    incident.resolved_at = None
    incident.acknowledged_at = None
    incident.acknowledged_by = None
    start_clock(env, incident, now)
    why = why.strip()
    _record(session, env, actor.name, "reopen", incident, via, detail=why or None)
    cards.changed(
        session,
        env,
        incident,
        env.words.t("incident.thread.reopened", who=env.people.label(actor.name), why=why or "—"),
    )
    target = incident.assignee or env.rota.on_duty(now)
    if target is None or target == actor.name:
        return Reopened(incident, None)
    page(session, env, incident, target, reopened_by=actor.name, why=why)
    return Reopened(incident, target)


def close(session: Session, env: Env, actor: Person, incident_id: int, *, via: str) -> Incident:
    incident = _load(session, incident_id, lock=True)
    _authorize(session, env, actor, Action.CLOSE, incident, via)
    if incident.status == CLOSED:
        _refuse(session, env, actor, "close", incident, via, "incident.already_closed")
    if incident.status != RESOLVED:
        key = (
            "incident.resolve_first" if sees_all_incidents(actor) else "incident.not_resolved_yet"
        )
        _refuse(session, env, actor, "close", incident, via, key)

    now = env.now()
    incident.status = CLOSED
    incident.closed_at = now
    _record(session, env, actor.name, "close", incident, via)
    cards.changed(
        session,
        env,
        incident,
        env.words.t("incident.thread.closed", who=env.people.label(actor.name)),
    )
    return incident


def close_stale_resolved(session: Session, env: Env, hours: float) -> list[str]:
    """Close incidents resolved more than ``hours`` ago that nobody confirmed or reopened."""
    now = env.now()
    query = (
        select(Incident)
        .where(Incident.status == RESOLVED, Incident.resolved_at <= now - timedelta(hours=hours))
        .order_by(Incident.id)
        .limit(100)
        .with_for_update(skip_locked=True)
    )
    closed: list[str] = []
    for incident in session.scalars(query):
        incident.status = CLOSED
        incident.closed_at = now
        _record(
            session,
            env,
            SYSTEM_ACTOR,
            "close",
            incident,
            "scheduler",
            detail=f"auto_close_hours={hours:g}",
        )
        cards.changed(session, env, incident, env.words.t("incident.thread.auto_closed"))
        notify.notify(
            session,
            env,
            notify.person(incident.reporter),
            Reply(
                env.words.t(
                    "incident.reporter.auto_closed", ref=incident.ref, title=incident.title
                )
            ),
        )
        closed.append(incident.ref)
    return closed


# --- guards ----------------------------------------------------------------------------


def _load(session: Session, incident_id: int, lock: bool = False) -> Incident:
    incident = session.get(Incident, incident_id, with_for_update=lock or None)
    if incident is None:
        raise NotFound("incident.not_found", ref=f"INC-{incident_id}")
    return incident


def _record(
    session: Session,
    env: Env,
    actor: str,
    action: str,
    incident: Incident,
    via: str,
    *,
    detail: str | None = None,
    result: str = audit.OK,
) -> None:
    """Audit one action on ``incident`` at the clock's time."""
    audit.record(
        session,
        at=env.now(),
        actor=actor,
        action=action,
        record=incident.ref,
        via=via,
        result=result,
        detail=detail,
    )


def _newest_paged(session: Session, name: str) -> int:
    query = (
        select(IncidentPage.incident_id)
        .join(Incident, Incident.id == IncidentPage.incident_id)
        .where(IncidentPage.person == name, Incident.status == OPEN)
        .order_by(IncidentPage.id.desc())
        .limit(1)
    )
    found = session.scalar(query)
    if found is None:
        raise NotFound("incident.nothing_paged")
    return found


def _authorize(
    session: Session, env: Env, actor: Person, action: Action, incident: Incident | None, via: str
) -> None:
    if allowed(actor, action, incident):
        return
    audit.record(
        session,
        at=env.now(),
        actor=actor.name,
        action=str(action),
        record=incident.ref if incident else None,
        via=via,
        result=audit.DENIED,
    )
    raise Denied(
        "access.denied",
        action=env.words.t(f"action.{action}"),
        ref=incident.ref if incident else "",
    )


def _refuse(
    session: Session,
    env: Env,
    actor: Person,
    action: str,
    incident: Incident,
    via: str,
    key: str,
    **params: str,
) -> None:
    """Record a refusal by state, then raise it; never returns."""
    _record(session, env, actor.name, action, incident, via, detail=key, result=audit.REFUSED)
    raise Conflict(key, ref=incident.ref, **params)


def _require_not_closed(
    session: Session, env: Env, actor: Person, action: str, incident: Incident, via: str
) -> None:
    if incident.status == CLOSED:
        _refuse(session, env, actor, action, incident, via, "incident.closed_final")
