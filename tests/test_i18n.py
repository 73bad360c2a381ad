"""Both catalogues say the same things, and every sentence the code asks for exists."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from rounds.i18n import LANGUAGES, Catalog, messages
from rounds.itsm.access import Action

ROOT = Path(__file__).resolve().parent.parent / "rounds"


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_catalogues_have_the_same_keys():
    zh, en = messages("zh"), messages("en")

    assert sorted(set(zh) ^ set(en)) == []


def test_catalogues_use_the_same_placeholders():
    zh, en = messages("zh"), messages("en")

    different = {k for k in zh if placeholders(zh[k]) != placeholders(en[k])}
    assert different == set()


def test_every_literal_key_in_the_code_exists():
    used: set[str] = set()
    pattern = re.compile(
        r"""\b(?:t|RoundsError|Invalid|NotFound|Denied|Conflict|_refuse)"""
        r"""\([^"()]*?"([a-z_]+(?:\.[a-z_]+)+)\""""
    )
    for path in ROOT.rglob("*.py"):
        used |= set(pattern.findall(path.read_text("utf-8")))
    missing = {k for k in used if k not in messages("en")}
    assert used, "the scan found no keys"
    assert missing == set()


@pytest.mark.parametrize("language", LANGUAGES)
def test_dynamic_keys_exist(language):
    from rounds import commands

    commands.load_all()
    catalog = Catalog(language)
    keys = [f"action.{a}" for a in Action] + ["action.escalate", "action.attach"]
    keys += [f"status.{s}" for s in ("open", "acknowledged", "resolved", "closed")]
    keys += [f"role.{r}" for r in ("staff", "engineer", "manager", "admin", "vendor")]
    keys += [
        f"help.{name}.{part}"
        for name in [*commands.REGISTRY, "as"]
        for part in ("usage", "summary")
    ]
    keys += [
        f"incident.list_{kind}_{scope}"
        for kind in ("head", "empty")
        for scope in ("open", "mine", "all")
    ]
    assert [k for k in keys if not catalog.has(k)] == []
