"""Chat commands: parse the text, call the domain, build a Reply. No platform code here.

A command module registers its handlers with :func:`command`; the handler's catalogue
entries ``help.<name>.usage`` and ``help.<name>.summary`` are its help text.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from rounds.itsm.access import Action
from rounds.itsm.context import Env
from rounds.itsm.errors import Invalid
from rounds.itsm.people import Person
from rounds.reply import Reply


@dataclass
class Context:
    """One command being handled: who, from where, with which arguments."""

    env: Env
    session: Session
    person: Person
    via: str
    args: str
    chat: str = ""
    # Photos that came with the message, already stored by the transport; a command that
    # keeps them sets ``photos_taken`` (the bot deletes the files otherwise).
    photos: tuple[str, ...] = ()
    photos_taken: bool = False
    # Whether this chat can send pictures at all (the guided report then asks for them).
    accepts_photos: bool = False

    def t(self, key: str, /, **params: object) -> str:
        return self.env.words.t(key, **params)


Handler = Callable[[Context], Reply | list[Reply]]


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    action: Action
    write: bool


REGISTRY: dict[str, Command] = {}


def command(name: str, *, action: Action, write: bool) -> Callable[[Handler], Handler]:
    """Register a handler under ``name``; ``write`` says whether it changes records."""

    def register(handler: Handler) -> Handler:
        REGISTRY[name] = Command(name, handler, action, write)
        return handler

    return register


def split_command(text: str) -> tuple[str, str]:
    """``/ack@RoundsBot INC-3`` to ("ack", "INC-3"); the name is lower-cased.

    Any whitespace ends the name (a Chinese keyboard's full-width space too), and the
    name is NFKC-normalised, so full-width letters (ＲＥＰＯＲＴ) are the command they look like.
    """
    parts = text.strip().split(None, 1)
    if not parts:
        return "", ""
    head = unicodedata.normalize("NFKC", parts[0])
    name = head.lstrip("/").split("@", 1)[0].lower()
    return name, parts[1].strip() if len(parts) > 1 else ""


def split_first(args: str) -> tuple[str, str]:
    """The first word of ``args`` and the rest, both stripped."""
    parts = args.strip().split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1].strip() if len(parts) > 1 else ""


def require(ctx: Context, value: str, command_name: str) -> str:
    """Refuse a missing argument with the command's usage line."""
    if not value:
        raise Invalid("error.missing_argument", usage=ctx.t(f"help.{command_name}.usage"))
    return value


def closest(name: str) -> str | None:
    found = difflib.get_close_matches(name, [*sorted(REGISTRY), "as"], n=1, cutoff=0.5)
    return found[0] if found else None


def load_all() -> None:
    """Import every command module so that its commands register."""
    from rounds.commands import forms, help, incidents, oncall  # noqa: F401
