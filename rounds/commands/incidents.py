"""Incident commands: report, incidents, incident, ack, assign, priority, note, resolve,
reopen, close."""

from __future__ import annotations

from rounds.commands import Context, command, forms, require, split_first
from rounds.commands.replies import filed_reply
from rounds.db.models import AuditEntry, Incident
from rounds.itsm import attachments, audit, cards, incidents
from rounds.itsm.access import Action
from rounds.itsm.paging import MARKS
from rounds.reply import Reply


def _ref(ctx: Context, name: str) -> tuple[int, str]:
    token, rest = split_first(ctx.args)
    return incidents.parse_ref(require(ctx, token, name)), rest


def _line(ctx: Context, incident: Incident) -> str:
    people = ctx.env.people
    who = people.label(incident.assignee) if incident.assignee else ctx.t("incident.unassigned")
    return ctx.t(
        "incident.list_line",
        mark=MARKS[incident.priority],
        priority=incident.priority,
        ref=incident.ref,
        status=ctx.t(f"status.{incident.status}"),
        title=incident.title,
        who=who,
        at=ctx.env.local(incident.created_at),
    )


@command("report", action=Action.REPORT, write=True)
def report(ctx: Context) -> Reply:
    if not ctx.args.strip():
        return forms.start_report(ctx)
    filed = incidents.report(ctx.session, ctx.env, ctx.person, ctx.args, via=ctx.via)
    ctx.photos_taken = bool(ctx.photos)
    for path in ctx.photos:  # a photo sent with "/report ..." as its caption
        attachments.attach(
            ctx.session, ctx.env, filed.incident, path, by=ctx.person.name, via=ctx.via
        )
    return filed_reply(ctx, filed)


@command("incidents", action=Action.LIST, write=False)
def list_incidents(ctx: Context) -> Reply:
    scope = (ctx.args.split() or ["open"])[0].lower()
    limit = ctx.env.config.incidents.list_limit
    rows, total = incidents.list_incidents(ctx.session, ctx.env, ctx.person, scope, limit)
    if not rows:
        return Reply(ctx.t(f"incident.list_empty_{scope}"))
    lines = [ctx.t(f"incident.list_head_{scope}", total=total)]
    lines += [_line(ctx, row) for row in rows]
    if total > len(rows):
        lines.append(ctx.t("incident.list_more", shown=len(rows), total=total))
    return Reply("\n".join(lines))


@command("incident", action=Action.VIEW, write=True)
def show(ctx: Context) -> list[Reply]:
    incident_id, _ = _ref(ctx, "incident")
    incident = incidents.view(ctx.session, ctx.env, ctx.person, incident_id, via=ctx.via)
    lines = [
        ctx.t("incident.description", text=incident.description),
        "",
        ctx.t("incident.timeline"),
    ]
    for entry in incidents.timeline(ctx.session, incident):
        detail = _detail(ctx, entry)
        detail = f" · {detail}" if detail else ""
        lines.append(
            ctx.t(
                "incident.timeline_line",
                at=ctx.env.local(entry.at),
                who=ctx.env.people.label(entry.actor),
                action=ctx.t(f"action.{entry.action}"),
                detail=detail,
            )
        )
    photos = [a.path for a in attachments.of_incident(ctx.session, incident.id)]
    if photos:
        lines.append(ctx.t("incident.photos", count=len(photos)))
    return [cards.card(ctx.env, incident), Reply("\n".join(lines), images=photos)]


def _detail(ctx: Context, entry: AuditEntry) -> str:
    """An audit entry's detail as people read it; the bot's own steps are put in words."""
    pairs = audit.details(entry.detail)
    if entry.action == "escalate" and "target" in pairs:
        target = pairs["target"]
        who = (
            ctx.t("incident.timeline_managers")
            if target.startswith("channel:")
            else ctx.env.people.label(target)
        )
        return ctx.t("incident.timeline_escalated", step=pairs.get("step", "?"), who=who)
    if entry.action == "close" and "auto_close_hours" in pairs:
        return ctx.t("incident.timeline_auto_closed", hours=pairs["auto_close_hours"])
    return entry.detail or ""


@command("ack", action=Action.ACK, write=True)
def ack(ctx: Context) -> Reply:
    token, _ = split_first(ctx.args)
    incident_id = incidents.parse_ref(token) if token else None
    incident = incidents.acknowledge(ctx.session, ctx.env, ctx.person, incident_id, via=ctx.via)
    return Reply(ctx.t("incident.acked", ref=incident.ref, title=incident.title))


@command("assign", action=Action.ASSIGN, write=True)
def assign(ctx: Context) -> Reply:
    incident_id, rest = _ref(ctx, "assign")
    name, _ = split_first(rest)
    incident = incidents.assign(
        ctx.session, ctx.env, ctx.person, incident_id, require(ctx, name, "assign"), via=ctx.via
    )
    return Reply(
        ctx.t("incident.assigned", ref=incident.ref, who=ctx.env.people.label(incident.assignee))
    )


@command("priority", action=Action.PRIORITY, write=True)
def priority(ctx: Context) -> Reply:
    incident_id, rest = _ref(ctx, "priority")
    value, _ = split_first(rest)
    incident = incidents.set_priority(
        ctx.session, ctx.env, ctx.person, incident_id, require(ctx, value, "priority"), via=ctx.via
    )
    return Reply(ctx.t("incident.priority_set", ref=incident.ref, priority=incident.priority))


@command("note", action=Action.NOTE, write=True)
def note(ctx: Context) -> Reply:
    incident_id, text = _ref(ctx, "note")
    incident = incidents.add_note(ctx.session, ctx.env, ctx.person, incident_id, text, via=ctx.via)
    return Reply(ctx.t("incident.noted", ref=incident.ref))


@command("resolve", action=Action.RESOLVE, write=True)
def resolve(ctx: Context) -> Reply:
    incident_id, text = _ref(ctx, "resolve")
    incident = incidents.resolve(ctx.session, ctx.env, ctx.person, incident_id, text, via=ctx.via)
    return Reply(ctx.t("incident.resolved", ref=incident.ref))


@command("reopen", action=Action.REOPEN, write=True)
def reopen(ctx: Context) -> Reply:
    incident_id, why = _ref(ctx, "reopen")
    done = incidents.reopen(ctx.session, ctx.env, ctx.person, incident_id, why, via=ctx.via)
    if done.paged is None:
        return Reply(ctx.t("incident.reopened_unpaged", ref=done.incident.ref))
    return Reply(
        ctx.t("incident.reopened", ref=done.incident.ref, who=ctx.env.people.label(done.paged))
    )


@command("close", action=Action.CLOSE, write=True)
def close(ctx: Context) -> Reply:
    incident_id, _ = _ref(ctx, "close")
    incident = incidents.close(ctx.session, ctx.env, ctx.person, incident_id, via=ctx.via)
    return Reply(ctx.t("incident.closed", ref=incident.ref))
