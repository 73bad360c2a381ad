"""What the domain needs besides a session: configuration, people, time, words, routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from rounds.clock import Clock
from rounds.config import Config
from rounds.i18n import Catalog
from rounds.itsm.oncall import Rota
from rounds.itsm.people import Directory
from rounds.itsm.priority import PriorityRules


@dataclass(frozen=True)
class Routes:
    """Which chat platforms are active; the outbox writes one row per platform."""

    platforms: tuple[str, ...]


@dataclass
class Env:
    config: Config
    clock: Clock
    routes: Routes
    people: Directory = field(init=False)
    words: Catalog = field(init=False)
    rota: Rota = field(init=False)
    priorities: PriorityRules = field(init=False)

    def __post_init__(self) -> None:
        self.people = Directory(self.config)
        self.words = Catalog(self.config.rounds.language)
        self.rota = Rota(self.config.oncall, self.config.zone)
        self.priorities = PriorityRules(self.config.priority)

    def now(self) -> datetime:
        return self.clock.now()

    def local(self, moment: datetime | None, fmt: str = "%m-%d %H:%M") -> str:
        """A time as people in the hospital read it."""
        if moment is None:
            return "—"
        return moment.astimezone(self.config.zone).strftime(fmt)
