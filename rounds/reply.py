"""The platform-neutral message: what commands answer and what the domain notifies.

Each transport renders it its own way (console lines, Block Kit, Telegram HTML). A button
carries the command it stands for, so every button has a typed equivalent and goes through
the same parsing and the same policy as the typed command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Button:
    label: str
    command: str
    style: str = "default"  # "default", "primary" or "danger"


@dataclass
class Reply:
    text: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)
    # Context line shown small under the message, such as "INC-3 · 16:40".
    footer: str = ""
    # The buttons are answers to a question (a form step), not commands on a record.
    choices: bool = False
    # The answer refuses or corrects the request (shown as an alert where platforms can).
    refused: bool = False
    # Stored attachments to show with it (paths relative to the data folder).
    images: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "fields": [list(f) for f in self.fields],
            "buttons": [
                {"label": b.label, "command": b.command, "style": b.style} for b in self.buttons
            ],
            "footer": self.footer,
            "choices": self.choices,
            "images": list(self.images),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        return cls(
            text=data.get("text", ""),
            fields=[(str(k), str(v)) for k, v in data.get("fields", [])],
            buttons=[
                Button(b["label"], b["command"], b.get("style", "default"))
                for b in data.get("buttons", [])
            ],
            footer=data.get("footer", ""),
            choices=bool(data.get("choices", False)),
            images=[str(i) for i in data.get("images", [])],
        )
