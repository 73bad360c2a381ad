"""Incident priority from impact and urgency (DOMAIN.md section 2), guessed from the text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from rounds.config import PriorityRule, PrioritySection

MATRIX = {
    "I1": {"U1": "P1", "U2": "P1", "U3": "P2"},
    "I2": {"U1": "P1", "U2": "P2", "U3": "P3"},
    "I3": {"U1": "P2", "U2": "P3", "U3": "P4"},
    "I4": {"U1": "P3", "U2": "P4", "U3": "P4"},
}
PRIORITIES = ("P1", "P2", "P3", "P4")
IMPACTS = ("I1", "I2", "I3", "I4")
_LATIN = re.compile(r"[A-Za-z0-9]")


def matrix(impact: str, urgency: str) -> str:
    return MATRIX[impact][urgency]


def more_urgent(a: str, b: str) -> str:
    """The more urgent of two priorities (P1 beats P2)."""
    return min(a, b, key=PRIORITIES.index)


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Latin keywords match whole words, Chinese ones anywhere; capitals only match capitals.

    A keyword is fenced by letters and digits only, so ``HIS`` is found in ``HIS系统`` and
    ``HIS,`` but not in ``this``; ``ICU`` matches ``ICU`` but not ``icu``.
    """
    escaped = re.escape(keyword.strip())
    if _LATIN.match(keyword.strip()[0]):
        escaped = r"(?<![A-Za-z0-9])" + escaped
    if _LATIN.match(keyword.strip()[-1]):
        escaped = escaped + r"(?![A-Za-z0-9])"
    letters = [c for c in keyword if c.isascii() and c.isalpha()]
    acronym = bool(letters) and all(c.isupper() for c in letters)
    return re.compile(escaped, 0 if acronym else re.IGNORECASE)


@dataclass(frozen=True)
class Assessment:
    impact: str
    urgency: str
    priority: str
    major: bool
    system: str | None
    location: str | None
    rules: tuple[str, ...]


class _CompiledRule:
    def __init__(self, rule: PriorityRule) -> None:
        self.rule = rule
        self.any = [keyword_pattern(k) for k in rule.keywords]
        self.also = [keyword_pattern(k) for k in rule.also_keywords]

    def matches(self, text: str) -> bool:
        if not any(p.search(text) for p in self.any):
            return False
        return not self.also or any(p.search(text) for p in self.also)


class PriorityRules:
    """The configured rules, compiled once."""

    def __init__(self, section: PrioritySection) -> None:
        self.section = section

    @cached_property
    def _rules(self) -> list[_CompiledRule]:
        return [_CompiledRule(r) for r in self.section.rules]

    def assess(
        self, text: str, *, impact: str | None = None, urgency: str | None = None
    ) -> Assessment:
        """First matching rule decides each of impact, urgency, system and location.

        Then every matching rule's ``min_priority`` and ``major`` apply, except those of a
        rule that claims a wider impact than the one decided: a rule that says "HIS is
        down" does not make one jammed printer at a nurse station a major incident.
        ``impact`` and ``urgency``, when the reporter gave them (the guided form), stand
        as given and count as decided.
        """
        matched = [c.rule for c in self._rules if c.matches(text)]
        impact = impact or _first(matched, "impact") or self.section.default_impact
        urgency = urgency or _first(matched, "urgency") or self.section.default_urgency
        priority = matrix(impact, urgency)
        major = False
        for rule in matched:
            if rule.impact is not None and IMPACTS.index(rule.impact) < IMPACTS.index(impact):
                continue  # its claim of a wider impact did not stand
            if rule.min_priority:
                priority = more_urgent(priority, rule.min_priority)
            major = major or rule.major
        if major:
            priority = "P1"
        return Assessment(
            impact,
            urgency,
            priority,
            major,
            _first(matched, "system"),
            _first(matched, "location"),
            tuple(r.name for r in matched),
        )


def _first(rules: list[PriorityRule], field: str) -> str | None:
    return next((getattr(r, field) for r in rules if getattr(r, field) is not None), None)
