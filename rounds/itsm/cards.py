"""What people read about an incident: its card in the ops channel and what changes it.

The card is posted once and edited in place on every change, with a line in its thread
saying what changed; the reporter hears about what concerns them.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from rounds.db.models import ACKNOWLEDGED, CLOSED, OPEN, RESOLVED, Incident
from rounds.itsm import notify
from rounds.itsm.context import Env
from rounds.itsm.paging import MARKS
from rounds.itsm.people import Person
from rounds.reply import Button, Reply


def card_key(incident: Incident) -> str:
    return f"incident:{incident.id}"


# --- messages --------------------------------------------------------------------------


def card(env: Env, incident: Incident) -> Reply:
    """The incident's message in the ops channel, edited in place as its state changes."""
    w = env.words
    major = w.t("incident.major_tag") if incident.major else ""
    text = w.t(
        "incident.card",
        mark=MARKS[incident.priority],
        priority=incident.priority,
        ref=incident.ref,
        title=incident.title,
        major=major,
    )
    fields = [
        (w.t("field.status"), w.t(f"status.{incident.status}")),
        (w.t("field.reporter"), env.people.label(incident.reporter)),
        (w.t("field.assignee"), env.people.label(incident.assignee)),
        (w.t("field.system"), system_label(env, incident.system)),
        (w.t("field.reported_at"), env.local(incident.created_at)),
    ]
    if incident.resolution and incident.status in (RESOLVED, CLOSED):
        fields.append((w.t("field.resolution"), incident.resolution))
    return Reply(
        text,
        fields=fields,
        buttons=card_buttons(env, incident),
        footer=w.t("incident.footer", impact=incident.impact, urgency=incident.urgency),
    )


def system_label(env: Env, name: str | None) -> str:
    """A system as people know it: its [[systems]] display name when it has one."""
    if name is None:
        return "—"
    for system in env.config.systems:
        if system.name == name:
            return system.display or name
    return name


def card_buttons(env: Env, incident: Incident) -> list[Button]:
    w = env.words
    ref = incident.ref
    if incident.status == OPEN:
        return [
            Button(w.t("button.ack"), f"ack {ref}", "primary"),
            Button(w.t("button.resolve"), f"resolve {ref}"),
        ]
    if incident.status == ACKNOWLEDGED:
        return [Button(w.t("button.resolve"), f"resolve {ref}", "primary")]
    if incident.status == RESOLVED:
        return [
            Button(w.t("button.close"), f"close {ref}"),
            Button(w.t("button.reopen"), f"reopen {ref}"),
        ]
    return []


def p1_notice(env: Env, incident: Incident) -> Reply:
    return Reply(
        env.words.t(
            "incident.managers_p1",
            ref=incident.ref,
            title=incident.title,
            reporter=env.people.label(incident.reporter),
            duty=env.people.label(env.rota.on_duty(env.now())),
        ),
        buttons=[Button(env.words.t("button.ack"), f"ack {incident.ref}", "primary")],
    )


def auto_close_hint(env: Env) -> str:
    hours = env.config.incidents.auto_close_hours
    return (
        "\n" + env.words.t("incident.reporter.auto_close_hint", hours=f"{hours:g}")
        if hours
        else ""
    )


def changed(session: Session, env: Env, incident: Incident, line: str) -> None:
    """Edit the card in place and say what changed in its thread."""
    notify.update(
        session, env, notify.channel("ops"), card(env, incident), ref_key=card_key(incident)
    )
    notify.notify(
        session,
        env,
        notify.channel("ops"),
        Reply(f"{incident.ref} · {line}"),
        thread_key=card_key(incident),
    )


def tell_reporter(
    session: Session,
    env: Env,
    incident: Incident,
    actor: Person,
    key: str,
    *,
    buttons: list[Button] | None = None,
    **params: str,
) -> None:
    """Message the reporter about what ``actor`` did, unless the reporter did it."""
    if incident.reporter == actor.name:
        return
    text = env.words.t(
        key, ref=incident.ref, title=incident.title, who=env.people.label(actor.name), **params
    )
    notify.notify(
        session, env, notify.person(incident.reporter), Reply(text, buttons=buttons or [])
    )
