"""Replies more than one command builds."""

from __future__ import annotations

from rounds.commands import Context
from rounds.itsm import incidents
from rounds.itsm.paging import MARKS
from rounds.reply import Reply


def filed_reply(ctx: Context, filed: incidents.Filed) -> Reply:
    """What the reporter reads once an incident is filed, typed or guided."""
    incident = filed.incident
    minutes = ctx.env.config.escalation.ack_minutes[incident.priority]
    lines = [
        ctx.t(
            "incident.filed",
            mark=MARKS[incident.priority],
            ref=incident.ref,
            priority=incident.priority,
            title=incident.title,
        )
    ]
    if filed.duty is None:
        lines.append(ctx.t("incident.filed_no_duty", minutes=f"{minutes:g}"))
    elif filed.duty == ctx.person.name:
        lines.append(ctx.t("incident.filed_you_on_duty", minutes=f"{minutes:g}"))
    else:
        lines.append(
            ctx.t(
                "incident.filed_duty", who=ctx.env.people.label(filed.duty), minutes=f"{minutes:g}"
            )
        )
    if incident.major:
        lines.append(ctx.t("incident.filed_major"))
    elif incident.priority == "P1":
        lines.append(ctx.t("incident.filed_p1"))
    if filed.truncated:
        lines.append(ctx.t("incident.filed_truncated", limit=ctx.env.config.incidents.max_text))
    lines.append(ctx.t("incident.filed_follow", ref=incident.ref))
    return Reply("\n".join(lines))
