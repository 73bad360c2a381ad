"""Inbound text hygiene: strip control characters and mask patient identifiers.

Everything a person types passes through :func:`clean_inbound` at the transport boundary,
before a command, the audit trail, the outbox or a log line sees it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

# C0 controls except tab and newline, DEL, C1 controls, the bidirectional overrides,
# embeddings and isolates that can make text read differently from what it contains, and
# the invisible characters (zero-width spaces and joiners, soft hyphen, word joiner) that
# text pasted from web pages and documents carries and that would hide a number's digits.
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u2069\ufeff]"
)
# 18-character resident ID (GB 11643; check digit may be X), also written in groups
# (110101 19900307 1234), and the older 15-digit form. Chinese characters count as word
# characters, so digits are fenced with digit lookarounds; a letter before the number
# ("ID110101...") does not protect it.
_RESIDENT_ID = re.compile(r"(?<!\d)(?:\d{6}[- ]?\d{4}[- ]?\d{4}[- ]?\d{3}[\dXx]|\d{15})(?!\d)")
# Mainland mobile numbers, optionally written 138-1234-5678 or 138 1234 5678, with +86.
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}(?!\d)")


@dataclass(frozen=True)
class MaskRule:
    """A named pattern; when it has a group named ``id``, only that group is masked."""

    name: str
    pattern: re.Pattern[str]


@dataclass
class CleanText:
    """The text after cleaning, with what was changed so the sender can be told."""

    text: str
    removed_controls: int = 0
    masked: dict[str, int] = field(default_factory=dict)

    @property
    def masked_count(self) -> int:
        return sum(self.masked.values())


BUILTIN_RULES = (
    MaskRule("resident_id", _RESIDENT_ID),
    MaskRule("mobile", _MOBILE),
)


def compile_rules(patterns: Iterable[tuple[str, str]]) -> tuple[MaskRule, ...]:
    """Built-in rules first, then the site's own (name, regex) pairs."""
    site = tuple(MaskRule(name, re.compile(regex)) for name, regex in patterns)
    return BUILTIN_RULES + site


def strip_controls(text: str) -> tuple[str, int]:
    """Remove control and bidi-override characters; CRLF and CR become newlines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    cleaned, count = _CONTROL.subn("", text)
    return unicodedata.normalize("NFC", cleaned), count


def mask_identifiers(text: str, rules: Iterable[MaskRule], placeholder: str) -> tuple[str, dict]:
    """Replace every identifier the rules find with ``placeholder``; count them by rule."""
    counts: dict[str, int] = {}
    for rule in rules:

        def _sub(match: re.Match[str], rule: MaskRule = rule) -> str:
            counts[rule.name] = counts.get(rule.name, 0) + 1
            if "id" in rule.pattern.groupindex and match.group("id") is not None:
                start, end = match.span("id")
                base = match.start()
                whole = match.group(0)
                return whole[: start - base] + placeholder + whole[end - base :]
            return placeholder

        text = rule.pattern.sub(_sub, text)
    return text, counts


def clean_inbound(text: str, rules: Iterable[MaskRule], placeholder: str) -> CleanText:
    """Strip controls, then mask identifiers: the one gate every inbound message passes."""
    stripped, removed = strip_controls(text)
    masked, counts = mask_identifiers(stripped, rules, placeholder)
    return CleanText(text=masked, removed_controls=removed, masked=counts)


def truncate(text: str, limit: int, marker: str) -> tuple[str, bool]:
    """Cut ``text`` to at most ``limit`` characters, the marker included; say if it was cut."""
    if len(text) <= limit:
        return text, False
    return text[: max(0, limit - len(marker))] + marker, True


def first_line(text: str, limit: int = 80) -> str:
    """A title: the first non-empty line, shortened with an ellipsis."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"
