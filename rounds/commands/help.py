"""help and whoami."""

from __future__ import annotations

from rounds.commands import REGISTRY, Context, closest, command
from rounds.itsm.access import Action, may_ever
from rounds.reply import Reply

# The order people meet the commands in: reporting first, then working, then the rest.
ORDER = (
    "report",
    "cancel",
    "incidents",
    "incident",
    "ack",
    "assign",
    "priority",
    "note",
    "resolve",
    "reopen",
    "close",
    "oncall",
    "whoami",
    "help",
)


def _order(name: str) -> tuple[int, str]:
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


@command("help", action=Action.HELP, write=False)
def help_(ctx: Context) -> Reply:
    wanted = ctx.args.split()[0].lstrip("/").lower() if ctx.args.split() else ""
    if wanted:
        if wanted not in REGISTRY and wanted != "as":
            guess = closest(wanted)
            key = "help.unknown_with_guess" if guess else "help.unknown"
            return Reply(ctx.t(key, name=wanted, guess=guess or ""))
        return Reply(
            ctx.t(
                "help.detail",
                usage=ctx.t(f"help.{wanted}.usage"),
                summary=ctx.t(f"help.{wanted}.summary"),
            )
        )
    lines = [ctx.t("help.head")]
    for name in sorted(REGISTRY, key=_order):
        if may_ever(ctx.person, REGISTRY[name].action):
            lines.append(
                ctx.t(
                    "help.line",
                    usage=ctx.t(f"help.{name}.usage"),
                    summary=ctx.t(f"help.{name}.summary"),
                )
            )
    if ctx.via == "console":
        lines.append(
            ctx.t("help.line", usage=ctx.t("help.as.usage"), summary=ctx.t("help.as.summary"))
        )
    lines.append(ctx.t("help.tail"))
    return Reply("\n".join(lines))


@command("whoami", action=Action.WHOAMI, write=False)
def whoami(ctx: Context) -> Reply:
    roles = ", ".join(ctx.t(f"role.{r}") for r in sorted(ctx.person.roles))
    key = "whoami.known" if ctx.person.known else "whoami.unknown"
    return Reply(ctx.t(key, who=ctx.person.label, roles=roles, via=ctx.via))
