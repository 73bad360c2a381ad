"""Duty rota commands: oncall."""

from __future__ import annotations

from rounds.commands import Context, command
from rounds.itsm.access import Action
from rounds.reply import Reply


@command("oncall", action=Action.ONCALL, write=False)
def oncall(ctx: Context) -> Reply:
    now = ctx.env.now()
    shift = ctx.env.rota.shift_at(now)
    if shift is None:
        return Reply(ctx.t("oncall.no_rota"))
    lines = [
        ctx.t("oncall.now", who=ctx.env.people.label(shift.person), until=ctx.env.local(shift.end))
    ]
    upcoming = ctx.env.rota.next_shift(now)
    if upcoming is not None:
        lines.append(
            ctx.t(
                "oncall.next",
                who=ctx.env.people.label(upcoming.person),
                at=ctx.env.local(upcoming.start),
            )
        )
    return Reply("\n".join(lines))
