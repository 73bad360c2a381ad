"""An incident's whole life, told by what each person involved sees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from rounds.bot.app import App
from rounds.config import load_config
from rounds.db.models import AuditEntry, Incident
from rounds.i18n import messages
from tests.conftest import Harness, write_config

EN = messages("en")

HIS_DOWN = "HIS 收费系统无法登录"
PRINTER = "门诊3号窗口打印机卡纸"
# A delivered message: "[where] body  <cN>", the body possibly over several lines.
DELIVERY = re.compile(r"^\[(?P<where>[^\]\n]+)\] (?P<body>.*?)  <(?P<id>c\d+)>$", re.M | re.S)


# --- reading what was shown and what was stored ---------------------------------------------


def delivered(shown: str, where: str) -> list[str]:
    """The bodies of the messages delivered to ``where`` ("#ops", "@eng.wang", "#ops ✎ c1")."""
    return [m["body"] for m in DELIVERY.finditer(shown) if m["where"] == where]


def replies(shown: str) -> str:
    """What the person typing was answered: everything before the first delivery."""
    first = DELIVERY.search(shown)
    return shown[: first.start()] if first else shown


def stored(app, number: int) -> Incident:
    with app.db.session(write=False) as s:
        return s.get(Incident, number)


def audit_entries(app) -> list[tuple]:
    with app.db.session(write=False) as s:
        return [
            (a.actor, a.action, a.record, a.result, a.transport)
            for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]


def refs(shown: str) -> list[str]:
    return re.findall(r"\bINC-\d+\b", shown)


# --- the steps of a life -------------------------------------------------------------------


def report_his_down(harness) -> str:
    return harness.say("nurse.li", f"report {HIS_DOWN}")


def to_resolved(harness, clock) -> None:
    """INC-1: reported, acknowledged, downgraded to P2, noted and resolved."""
    report_his_down(harness)
    clock.advance(minutes=2)
    harness.say("eng.wang", "ack")
    clock.advance(minutes=3)
    harness.say("eng.wang", "priority INC-1 P2")
    clock.advance(minutes=5)
    harness.say("eng.wang", "note INC-1 only window 3 is affected")
    clock.advance(minutes=10)
    harness.say("eng.wang", "resolve INC-1 restarted the login service")


def whole_life(harness, clock) -> None:
    """INC-1 from report to close, with one reopen on the way."""
    to_resolved(harness, clock)
    clock.advance(minutes=15)
    harness.say("nurse.li", "reopen INC-1 still broken")
    clock.advance(minutes=20)
    harness.say("eng.wang", "resolve INC-1 replaced the network card")
    clock.advance(minutes=25)
    harness.say("nurse.li", "close INC-1")


# --- reporting ---------------------------------------------------------------------------


def test_staff_report_of_his_login_failure_is_a_major_p1(harness, app):
    shown = report_his_down(harness)

    answer = replies(shown)
    assert f"✅ Filed INC-1 (🔴 P1): {HIS_DOWN}" in answer
    assert "The duty engineer 王工 (eng.wang) has been told" in answer
    assert "handled as a major incident" in answer
    incident = stored(app, 1)
    assert (incident.priority, incident.major, incident.status) == ("P1", True, "open")
    [card] = delivered(shown, "#ops")
    assert card.startswith(f"🔴 P1 INC-1 {HIS_DOWN} [MAJOR INCIDENT]")


def test_a_p1_report_reaches_the_managers_channel(harness):
    shown = report_his_down(harness)

    [notice] = delivered(shown, "#managers")
    assert notice.startswith(f"🚨 P1 incident INC-1: {HIS_DOWN}")
    assert "李护士·门诊 (nurse.li)" in notice


def test_the_duty_engineer_gets_a_direct_message_with_an_acknowledge_button(harness):
    shown = report_his_down(harness)

    [page] = delivered(shown, "@eng.wang")
    assert page.startswith(f"🔴 New incident INC-1 (P1): {HIS_DOWN}")
    assert "[Acknowledge: ack INC-1]" in page
    assert delivered(shown, "@eng.zhao") == []


def test_a_p4_report_does_not_reach_the_managers(harness):
    shown = harness.say("nurse.li", f"report {PRINTER}")

    assert "Filed INC-1 (🔵 P4)" in shown
    assert delivered(shown, "#managers") == []


# --- acknowledging, triage, notes --------------------------------------------------------


def test_a_bare_ack_takes_the_newest_incident_paged_to_the_engineer(harness, app):
    harness.say("nurse.li", f"report {PRINTER}")
    report_his_down(harness)

    shown = harness.say("eng.wang", "ack")

    assert f"👍 You acknowledged INC-2: {HIS_DOWN}" in replies(shown)
    assert (stored(app, 2).status, stored(app, 2).acknowledged_by) == ("acknowledged", "eng.wang")
    assert stored(app, 1).status == "open"


def test_acknowledging_edits_the_card_and_tells_the_reporter(harness, app):
    report_his_down(harness)

    shown = harness.say("eng.wang", "ack")

    [card] = delivered(shown, "#ops ✎ c1")  # c1: the card, the first message posted
    assert "Status: acknowledged" in card and "Assignee: 王工 (eng.wang)" in card
    [told] = delivered(shown, "@nurse.li")
    assert "Your report INC-1" in told and "taken by 王工 (eng.wang)" in told
    assert stored(app, 1).assignee == "eng.wang"


def test_an_engineer_changing_the_priority_edits_the_card_and_threads_the_change(harness, app):
    report_his_down(harness)
    harness.say("eng.wang", "ack")

    shown = harness.say("eng.wang", "priority INC-1 P2")

    assert "INC-1 is now P2." in replies(shown)
    [card] = delivered(shown, "#ops ✎ c1")
    assert card.startswith(f"🟠 P2 INC-1 {HIS_DOWN}")
    assert delivered(shown, "#ops ↳ c1") == [
        "INC-1 · 王工 (eng.wang) changed the priority from P1 to P2"
    ]
    assert stored(app, 1).priority == "P2"


def test_raising_an_incident_to_p1_tells_the_managers(harness):
    harness.say("nurse.li", f"report {PRINTER}")

    shown = harness.say("eng.zhao", "priority INC-1 P1")

    [notice] = delivered(shown, "#managers")
    assert notice.startswith("🚨 P1 incident INC-1")


def test_a_note_is_threaded_under_the_card_in_ops(harness):
    report_his_down(harness)

    shown = harness.say("eng.wang", "note INC-1 only window 3 is affected")

    assert "Note added to INC-1." in replies(shown)
    assert delivered(shown, "#ops ↳ c1") == [
        "INC-1 · 📝 王工 (eng.wang): only window 3 is affected"
    ]
    assert delivered(shown, "#ops ✎ c1") == []  # a note does not change the card


# --- resolving, reopening, closing --------------------------------------------------------


def test_resolving_tells_the_reporter_with_the_resolution_and_buttons(harness, app):
    report_his_down(harness)
    harness.say("eng.wang", "ack")

    shown = harness.say("eng.wang", "resolve INC-1 restarted the login service")

    assert "✅ INC-1 is resolved; the reporter will be told." in replies(shown)
    [told] = delivered(shown, "@nurse.li")
    assert "was resolved by 王工 (eng.wang): restarted the login service" in told
    assert "[Confirm fixed: close INC-1]" in told and "[Reopen: reopen INC-1]" in told
    [card] = delivered(shown, "#ops ✎ c1")
    assert "Status: resolved" in card and "Resolution: restarted the login service" in card
    incident = stored(app, 1)
    assert (incident.status, incident.resolution) == ("resolved", "restarted the login service")


def test_the_reporter_reopening_pages_the_assignee_again_and_clears_the_ack(harness, app, clock):
    to_resolved(harness, clock)

    shown = harness.say("nurse.li", "reopen INC-1 still broken")

    assert "INC-1 is open again" in replies(shown)
    [page] = delivered(shown, "@eng.wang")
    assert "INC-1" in page and "[Acknowledge: ack INC-1]" in page
    assert delivered(shown, "#ops ↳ c1") == [
        "INC-1 · reopened by 李护士·门诊 (nurse.li): still broken"
    ]
    incident = stored(app, 1)
    assert incident.status == "open"
    assert (incident.acknowledged_by, incident.acknowledged_at) == (None, None)
    assert incident.resolved_at is None
    assert incident.assignee == "eng.wang"


def test_a_bare_ack_after_a_reopen_takes_the_reopened_incident(harness, app, clock):
    to_resolved(harness, clock)
    harness.say("nurse.li", "reopen INC-1 still broken")

    assert "You acknowledged INC-1" in harness.say("eng.wang", "ack")
    assert stored(app, 1).status == "acknowledged"


def test_the_reporter_closes_a_resolved_incident(harness, app, clock):
    to_resolved(harness, clock)

    shown = harness.say("nurse.li", "close INC-1")

    assert "INC-1 is closed. Thank you for confirming!" in replies(shown)
    [card] = delivered(shown, "#ops ✎ c1")
    assert "Status: closed" in card and "[" not in card.split("(impact", 1)[1]
    assert delivered(shown, "#ops ↳ c1") == ["INC-1 · closed by 李护士·门诊 (nurse.li)"]
    assert stored(app, 1).status == "closed"
    assert stored(app, 1).closed_at is not None


# --- the record of it all ---------------------------------------------------------------------


def test_the_timeline_shows_every_step_in_order_with_its_actor(harness, clock):
    whole_life(harness, clock)

    shown = harness.say("nurse.li", "incident INC-1")

    assert "Status: closed" in shown and f"Description: {HIS_DOWN}" in shown
    timeline = shown.split("Timeline:\n", 1)[1].strip().splitlines()
    assert timeline == [
        "12-03 10:00 李护士·门诊 (nurse.li) report · P1 I1/U1 major",
        "12-03 10:02 王工 (eng.wang) acknowledge",
        "12-03 10:05 王工 (eng.wang) reprioritise · P1 -> P2",
        "12-03 10:10 王工 (eng.wang) add a note to · only window 3 is affected",
        "12-03 10:20 王工 (eng.wang) resolve · restarted the login service",
        "12-03 10:35 李护士·门诊 (nurse.li) reopen · still broken",
        "12-03 10:55 王工 (eng.wang) resolve · replaced the network card",
        "12-03 11:20 李护士·门诊 (nurse.li) close",
    ]


def test_every_state_change_has_exactly_one_ok_audit_row_from_the_console(harness, app, clock):
    whole_life(harness, clock)
    harness.say("nurse.li", "incident INC-1")  # reading changes nothing and is not audited

    assert audit_entries(app) == [
        ("nurse.li", "report", "INC-1", "ok", "console"),
        ("eng.wang", "ack", "INC-1", "ok", "console"),
        ("eng.wang", "priority", "INC-1", "ok", "console"),
        ("eng.wang", "note", "INC-1", "ok", "console"),
        ("eng.wang", "resolve", "INC-1", "ok", "console"),
        ("nurse.li", "reopen", "INC-1", "ok", "console"),
        ("eng.wang", "resolve", "INC-1", "ok", "console"),
        ("nurse.li", "close", "INC-1", "ok", "console"),
    ]


# --- lists -------------------------------------------------------------------------------------


@pytest.fixture
def three_incidents(harness, clock):
    """INC-1 closed and INC-2 open, both nurse.li's; INC-3 mgr.chen's, taken by eng.wang."""
    whole_life(harness, clock)
    harness.say("nurse.li", f"report {PRINTER}")
    harness.say("mgr.chen", "report 会议室投影仪不亮")
    harness.say("eng.wang", "ack INC-3")
    return harness


@pytest.mark.parametrize(
    ("line", "head", "listed"),
    [
        ("incidents", "Open incidents (1):", ["INC-2"]),
        ("incidents open", "Open incidents (1):", ["INC-2"]),
        ("incidents mine", "Incidents of yours (1):", ["INC-2"]),
        ("incidents all", "All incidents (2):", ["INC-2", "INC-1"]),
    ],
)
def test_the_reporter_lists_her_incidents_newest_first(three_incidents, line, head, listed):
    shown = three_incidents.say("nurse.li", line)

    assert shown.startswith(head)
    assert refs(shown) == listed


@pytest.mark.parametrize(
    ("line", "head", "listed"),
    [
        ("incidents", "Open incidents (2):", ["INC-3", "INC-2"]),
        ("incidents mine", "Incidents of yours (1):", ["INC-3"]),
        ("incidents ALL", "All incidents (3):", ["INC-3", "INC-2", "INC-1"]),
    ],
)
def test_an_engineer_lists_everybodys_incidents(three_incidents, line, head, listed):
    shown = three_incidents.say("eng.wang", line)

    assert shown.startswith(head)
    assert refs(shown) == listed


def test_a_list_line_shows_priority_status_title_and_assignee(three_incidents):
    shown = three_incidents.say("eng.wang", "incidents mine")

    assert "INC-3 [acknowledged] 会议室投影仪不亮 · 王工 (eng.wang) · 12-03 11:20" in shown


def test_empty_lists_say_so(harness):
    assert harness.say("nurse.li", "incidents").strip() == "No open incidents."
    assert harness.say("nurse.li", "incidents mine").strip() == "No unclosed incidents of yours."
    assert harness.say("nurse.li", "incidents all").strip() == "No incidents yet."


# --- the rota, who am I, help -----------------------------------------------------------------


def test_oncall_names_eng_wang_now_and_eng_zhao_next(harness):
    shown = harness.say("nurse.li", "oncall")

    assert "On duty now: 王工 (eng.wang), until 12-04 08:00." in shown
    assert "Next: 赵工 (eng.zhao), from 12-04 08:00." in shown


def test_oncall_is_unchanged_just_before_the_morning_handover(harness, clock):
    clock.advance(hours=21, minutes=59)  # 12-04 07:59

    assert "On duty now: 王工 (eng.wang), until 12-04 08:00." in harness.say("nurse.li", "oncall")


def test_oncall_flips_to_eng_zhao_after_the_next_morning_handover(harness, clock):
    clock.advance(hours=24)  # 12-04 10:00

    shown = harness.say("nurse.li", "oncall")

    assert "On duty now: 赵工 (eng.zhao), until 12-05 08:00." in shown
    assert "Next: 王工 (eng.wang), from 12-05 08:00." in shown


def test_after_the_handover_a_report_pages_eng_zhao(harness, clock):
    clock.advance(hours=24)

    shown = harness.say("nurse.li", f"report {PRINTER}")

    assert "The duty engineer 赵工 (eng.zhao) has been told" in shown
    assert len(delivered(shown, "@eng.zhao")) == 1
    assert delivered(shown, "@eng.wang") == []


def test_whoami_for_a_known_person(harness):
    assert harness.say("nurse.li", "whoami").strip() == (
        "You are 李护士·门诊 (nurse.li); roles: staff (via console)."
    )
    assert "roles: vendor engineer" in harness.say("vendor.sun", "whoami")


def test_whoami_for_an_unknown_person(harness):
    assert harness.say("visitor.zhang", "whoami").strip() == (
        "You are visitor.zhang, not in the people list, so treated as staff (via console)."
    )


def help_line(command: str) -> str:
    return EN["help.line"].format(
        usage=EN[f"help.{command}.usage"], summary=EN[f"help.{command}.summary"]
    )


def test_help_for_staff_lists_report_but_not_assign(harness):
    shown = harness.say("nurse.li", "help")

    assert shown.startswith("Commands:")
    for offered in (
        "report",
        "incidents",
        "incident",
        "note",
        "reopen",
        "close",
        "oncall",
        "whoami",
        "help",
    ):
        assert help_line(offered) in shown, offered
    for withheld in ("ack", "assign", "priority", "resolve"):
        assert help_line(withheld) not in shown, withheld


def test_help_for_an_engineer_lists_assign(harness):
    shown = harness.say("eng.wang", "help")

    assert "assign <id> <person> — Assign an incident" in shown
    for offered in ("report", "ack", "assign", "priority", "resolve", "close"):
        assert help_line(offered) in shown, offered


def test_help_for_a_vendor_lists_ack_and_resolve_but_not_triage(harness):
    shown = harness.say("vendor.sun", "help")

    assert help_line("ack") in shown and help_line("resolve") in shown
    assert help_line("assign") not in shown and help_line("priority") not in shown


def test_help_ack_shows_its_usage(harness):
    assert harness.say("nurse.li", "help ack").strip() == (
        "ack [id]\nAcknowledge and take an incident; with no id, the newest one paged to you."
    )


# --- the Chinese catalogue --------------------------------------------------------------------


def test_a_chinese_configuration_answers_in_chinese(tmp_path: Path, clock):
    path = write_config(tmp_path / "zh.toml", "", data_dir=tmp_path / "zh-data")
    path.write_text(
        path.read_text(encoding="utf-8").replace('language = "en"', 'language = "zh"'),
        encoding="utf-8",
    )
    app = App(load_config(path, environ={}), clock=clock)
    app.upgrade()
    harness = Harness(app)
    try:
        shown = harness.say("nurse.li", "report 打印机卡纸")
    finally:
        harness.close()
        app.close()

    assert "✅ 已登记 INC-1" in shown
    assert "Filed" not in shown


# --- a wrong sentence --------------------------------------------------------------------------


def test_the_duty_engineer_reporting_a_fault_is_not_told_nobody_is_on_duty(harness):
    shown = harness.say("eng.wang", f"report {PRINTER}")

    assert "Filed INC-1" in shown
    assert "You are on duty; it is posted to the ops channel" in shown
    assert "Nobody is on the duty rota" not in shown


def test_the_page_after_a_reopen_does_not_call_it_a_new_incident(harness, clock):
    to_resolved(harness, clock)

    shown = harness.say("nurse.li", "reopen INC-1 still broken")

    [page] = delivered(shown, "@eng.wang")
    assert "New incident" not in page
