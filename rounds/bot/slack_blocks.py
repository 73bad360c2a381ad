"""A Reply as Slack Block Kit, within Slack's limits, with people's text escaped.

Escaping ``&``, ``<`` and ``>`` is what stops a report from mentioning ``<!channel>`` or
faking a link; Slack documents these three as the only characters to escape in text.
"""

from __future__ import annotations

import json
from typing import Any

from rounds.reply import Reply

SECTION_LIMIT = 3000  # characters in one section's text
FIELD_LIMIT = 2000  # characters in one field
MAX_FIELDS = 10  # fields in one section
BUTTON_LABEL_LIMIT = 75
BUTTON_VALUE_LIMIT = 2000
MAX_BLOCKS = 50
TEXT_LIMIT = 40_000  # the top-level fallback text
ACTION_ID = "rounds_cmd"


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chunks(text: str, limit: int) -> list[str]:
    """Split at line breaks where possible, never beyond ``limit`` characters a piece."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        cut = cut if cut > 0 else limit
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n")
    if text:
        pieces.append(text)
    return pieces


def fallback_text(reply: Reply) -> str:
    """The plain text Slack shows in notifications and where blocks are not rendered."""
    return escape(reply.text)[:TEXT_LIMIT]


def blocks(reply: Reply) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for piece in chunks(escape(reply.text), SECTION_LIMIT):
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": piece}})
    for start in range(0, len(reply.fields), MAX_FIELDS):
        fields = [
            {"type": "mrkdwn", "text": f"*{escape(k)}*\n{escape(v)}"[:FIELD_LIMIT]}
            for k, v in reply.fields[start : start + MAX_FIELDS]
        ]
        out.append({"type": "section", "fields": fields})
    if reply.images:  # kept in Rounds' data folder; Slack shows how many there are
        out.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": "📎 " * min(len(reply.images), 10)}],
            }
        )
    if reply.footer:
        out.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": escape(reply.footer)[:FIELD_LIMIT]}],
            }
        )
    if reply.buttons:
        elements = []
        for n, button in enumerate(reply.buttons[:25]):
            element: dict[str, Any] = {
                "type": "button",
                "action_id": f"{ACTION_ID}_{n}",
                "text": {"type": "plain_text", "text": button.label[:BUTTON_LABEL_LIMIT]},
                "value": button.command[:BUTTON_VALUE_LIMIT],
            }
            if button.style in ("primary", "danger"):
                element["style"] = button.style
            elements.append(element)
        out.append({"type": "actions", "elements": elements})
    if len(out) > MAX_BLOCKS:
        out = [*out[: MAX_BLOCKS - 1], out[-1]] if reply.buttons else out[:MAX_BLOCKS]
    return out


def message_id(channel: str, ts: str) -> str:
    """What the outbox stores for a Slack message: ``chat.update`` needs both parts."""
    return json.dumps([channel, ts])


def parse_message_id(value: str) -> tuple[str, str]:
    channel, ts = json.loads(value)
    return channel, ts
