"""Expected errors: their message is a catalogue key, safe to show in chat."""

from __future__ import annotations

from typing import Any


class RoundsError(Exception):
    """An expected refusal; ``key`` and ``params`` render the sentence the user reads."""

    def __init__(self, key: str, /, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


class Invalid(RoundsError):
    """The input is malformed or incomplete."""


class NotFound(RoundsError):
    """The record named does not exist."""


class Denied(RoundsError):
    """The policy does not allow this person this action."""


class Conflict(RoundsError):
    """The record's state does not allow the action (already acknowledged, closed, ...)."""
