"""The console transport: type commands as in chat, see every post marked with its place.

It is the embedded default platform and goes through the outbox like any other: what the
bot posts to ``#ops`` or to ``@eng.wang`` is printed by the console sender when the
dispatcher delivers it.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from rounds.commands import split_command
from rounds.config import PERSON_NAME
from rounds.reply import Reply

from .core import Bot, Inbound
from .dispatcher import Dispatcher, Outgoing

PLATFORM = "console"


def render(reply: Reply, indent: str = "") -> str:
    """A Reply as console lines: text, fields, footer, then buttons with their commands."""
    lines = reply.text.splitlines() or [""]
    if reply.fields:
        shown = " | ".join(f"{k}: {' '.join(v.split())}" for k, v in reply.fields)
        lines.append(f"  {shown}")
    if reply.footer:
        lines.append(f"  ({reply.footer})")
    lines += [f"  [photo] {image}" for image in reply.images]
    if reply.buttons and reply.choices:
        lines.append("  → " + " | ".join(b.command for b in reply.buttons))
    elif reply.buttons:
        lines.append("  " + "  ".join(f"[{b.label}: {b.command}]" for b in reply.buttons))
    return "\n".join(indent + line if i else line for i, line in enumerate(lines))


class ConsoleSender:
    """Prints outbox messages; the message id is the outbox row's own."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def send(self, item: Outgoing) -> str:
        if item.op == "edit" and item.edit_of is not None:
            mark = f"[{item.address} ✎ {item.edit_of}]"
        elif item.thread_of is not None:
            mark = f"[{item.address} ↳ {item.thread_of}]"
        else:
            mark = f"[{item.address}]"
        message_id = f"c{item.id}"
        self.out.write(f"{mark} {render(item.message, '    ')}  <{message_id}>\n")
        self.out.flush()
        return message_id


class Console:
    """One person at a keyboard (or a script), who can become another with ``as``."""

    def __init__(self, bot: Bot, dispatcher: Dispatcher, person: str, out: TextIO) -> None:
        self.bot = bot
        self.dispatcher = dispatcher
        self.out = out
        self.person = bot.env.people.resolve(person)
        dispatcher.senders[PLATFORM] = ConsoleSender(out)

    def write(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def switch(self, name: str) -> None:
        words = self.bot.env.words
        name = name.strip().lstrip("@")
        if not name:
            self.write(words.t("console.as_usage"))
            return
        if not PERSON_NAME.fullmatch(name):
            self.write(words.t("console.as_bad_name", name=name[:80]))
            return
        self.person = self.bot.env.people.resolve(name)
        key = "console.as_known" if self.person.known else "console.as_unknown"
        self.write(words.t(key, who=self.person.label))

    async def handle_line(self, line: str) -> None:
        """Handle one typed line, then deliver what it queued."""
        if not line.strip():
            return
        name, args = split_command(line)
        if name == "as":
            self.switch(args)
            return
        for reply in await self.bot.handle(Inbound(PLATFORM, self.person, line, chat=PLATFORM)):
            self.write(render(reply))
        await self.dispatcher.drain()

    async def run(self, stream: TextIO, interactive: bool) -> None:
        """Read lines until end of input."""
        self.write(self.bot.env.words.t("console.banner", who=self.person.label))
        await self.dispatcher.drain()
        while True:
            if interactive:
                self.out.write(f"{self.person.name}> ")
                self.out.flush()
            line = await asyncio.to_thread(stream.readline)
            if not line:
                break
            await self.handle_line(line)
        if interactive:
            self.out.write("\n")
        await self.dispatcher.drain()


def stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()
