"""Paging: telling one person directly about an incident, and remembering that we did."""

from __future__ import annotations

from sqlalchemy.orm import Session

from rounds.db.models import Incident, IncidentPage
from rounds.itsm import notify
from rounds.itsm.context import Env
from rounds.reply import Button, Reply

MARKS = {"P1": "🔴", "P2": "🟠", "P3": "🟡", "P4": "🔵"}


def page(
    session: Session,
    env: Env,
    incident: Incident,
    name: str,
    *,
    assigned_by: str | None = None,
    escalated: bool = False,
    reopened_by: str | None = None,
    why: str = "",
) -> None:
    """Message ``name`` about ``incident``; a bare ``ack`` from them will then find it."""
    w = env.words
    params = {
        "mark": MARKS[incident.priority],
        "ref": incident.ref,
        "priority": incident.priority,
        "title": incident.title,
    }
    if assigned_by:
        text = w.t("incident.page.assigned", who=env.people.label(assigned_by), **params)
    elif reopened_by:
        text = w.t(
            "incident.page.reopened", who=env.people.label(reopened_by), why=why or "—", **params
        )
    elif escalated:
        minutes = f"{env.config.escalation.ack_minutes[incident.priority]:g}"
        text = w.t("incident.page.escalated", minutes=minutes, **params)
    else:
        text = w.t("incident.page.new", reporter=env.people.label(incident.reporter), **params)
    buttons = []
    if incident.status == "open":
        buttons = [Button(w.t("button.ack"), f"ack {incident.ref}", "primary")]
    notify.notify(session, env, notify.person(name), Reply(text, buttons=buttons))
    session.add(IncidentPage(incident_id=incident.id, person=name, at=env.now()))
