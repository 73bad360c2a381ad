"""Every sentence a user reads, one catalogue per language (``zh.toml``, ``en.toml``)."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any

LANGUAGES = ("zh", "en")


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = str(value)
    return flat


@cache
def messages(language: str) -> dict[str, str]:
    """The flat catalogue of one language: dotted key to template."""
    if language not in LANGUAGES:
        raise ValueError(f"no catalogue for language {language!r}")
    raw = resources.files("rounds.i18n").joinpath(f"{language}.toml").read_text("utf-8")
    return _flatten(tomllib.loads(raw))


class Catalog:
    """Sentences of one language; ``t("incident.filed", ref="INC-3")``."""

    def __init__(self, language: str) -> None:
        self.language = language
        self._messages = messages(language)

    def t(self, key: str, /, **params: Any) -> str:
        template = self._messages.get(key)
        if template is None:
            raise KeyError(f"no message {key!r} in the {self.language} catalogue")
        return template.format(**params) if params else template

    def has(self, key: str) -> bool:
        return key in self._messages
