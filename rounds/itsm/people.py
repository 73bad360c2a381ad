"""People and their roles, from ``[[people]]``; anyone unknown is staff."""

from __future__ import annotations

from dataclasses import dataclass

from rounds.config import Config

WORKER_ROLES = frozenset({"engineer", "manager", "admin", "vendor"})


@dataclass(frozen=True)
class Person:
    name: str
    display: str
    roles: frozenset[str]
    known: bool = True
    slack: str | None = None
    telegram: int | None = None

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def label(self) -> str:
        """How chat shows a person: display name and the name to type."""
        if self.display and self.display != self.name:
            return f"{self.display} ({self.name})"
        return self.name


class Directory:
    """Look people up by name or platform id."""

    def __init__(self, config: Config) -> None:
        self._by_name = {
            p.name: Person(
                p.name, p.display or p.name, frozenset(p.roles), True, p.slack, p.telegram
            )
            for p in config.people
        }
        self._by_slack = {p.slack: p for p in self._by_name.values() if p.slack}
        self._by_telegram = {p.telegram: p for p in self._by_name.values() if p.telegram}

    def get(self, name: str) -> Person | None:
        return self._by_name.get(name)

    def resolve(self, name: str) -> Person:
        """The configured person, or a stranger with the staff role."""
        return self._by_name.get(name) or Person(name, name, frozenset({"staff"}), known=False)

    def stranger(self, platform: str, user_id: str | int, display: str = "") -> Person:
        """Someone not in [[people]] who wrote from a platform: staff, named after their id.

        The name (``slack.u0123abc``, ``telegram.12345``) is how the audit trail, the
        incident and the outbox know them; :func:`platform_id` reads the id back.
        """
        return Person(
            f"{platform}.{str(user_id).lower()}",
            display or str(user_id),
            frozenset({"staff"}),
            known=False,
            slack=str(user_id) if platform == "slack" else None,
            telegram=int(user_id) if platform == "telegram" else None,
        )

    def by_slack(self, user_id: str) -> Person | None:
        return self._by_slack.get(user_id)

    def by_telegram(self, user_id: int) -> Person | None:
        return self._by_telegram.get(user_id)

    def label(self, name: str | None) -> str:
        if name is None:
            return "—"
        return self.resolve(name).label
