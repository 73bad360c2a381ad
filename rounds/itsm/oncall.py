"""Who is on duty: the rotation advances one person at each handover time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from rounds.config import OncallSection


@dataclass(frozen=True)
class Shift:
    person: str
    start: datetime
    end: datetime


class Rota:
    def __init__(self, section: OncallSection, zone: ZoneInfo) -> None:
        self.rotation = list(section.rotation)
        self.times = section.handover_times
        self.start = section.start
        self.zone = zone

    def _boundary(self, day: date, index: int) -> datetime:
        return datetime.combine(day, self.times[index], tzinfo=self.zone)

    def shift_at(self, now: datetime) -> Shift | None:
        """The shift that contains ``now``; None when the rotation is empty."""
        if not self.rotation:
            return None
        local = now.astimezone(self.zone)
        per_day = len(self.times)
        today = local.date()
        passed = sum(1 for i in range(per_day) if self._boundary(today, i) <= local)
        # Handovers from the first one on the start date up to and including the last one
        # before now; shift 0 begins at the first handover of the start date.
        index = (today - self.start).days * per_day + passed - 1
        person = self.rotation[index % len(self.rotation)]

        if passed == 0:
            start = self._boundary(today - timedelta(days=1), per_day - 1)
            end = self._boundary(today, 0)
        else:
            start = self._boundary(today, passed - 1)
            end = (
                self._boundary(today, passed)
                if passed < per_day
                else self._boundary(today + timedelta(days=1), 0)
            )
        return Shift(person, start, end)

    def on_duty(self, now: datetime) -> str | None:
        shift = self.shift_at(now)
        return shift.person if shift else None

    def after(self, name: str | None) -> list[str]:
        """The others on the rotation, in order, starting with the one after ``name``."""
        if name not in self.rotation:
            return list(self.rotation)
        at = self.rotation.index(name)
        return [p for p in self.rotation[at + 1 :] + self.rotation[:at] if p != name]

    def next_shift(self, now: datetime) -> Shift | None:
        current = self.shift_at(now)
        if current is None:
            return None
        return self.shift_at(current.end + timedelta(seconds=1))
