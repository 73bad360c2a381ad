"""The one policy (rounds.itsm.access), as a table, and the same policy seen through chat."""

from __future__ import annotations

import itertools
import re

import pytest
from sqlalchemy import func, select

from rounds.db.models import AuditEntry, Incident, OutboxMessage
from rounds.itsm.access import Action, allowed, may_ever
from rounds.itsm.people import Directory, Person

# --- the table ---------------------------------------------------------------------------

Y, N = True, False
RELATIONS = ("none", "reported", "assigned", "other")

# How the person stands to the incident, one column each:
#   none      no incident at all (the question asked without a record)
#   reported  an incident the person reported (assigned to somebody else)
#   assigned  an incident assigned to the person (reported by somebody else)
#   other     somebody else's incident, reported and assigned to others
#
#                    none reported assigned other
STAFF = {
    Action.REPORT: (Y, Y, Y, Y),
    Action.LIST: (Y, Y, Y, Y),
    Action.ONCALL: (Y, Y, Y, Y),
    Action.WHOAMI: (Y, Y, Y, Y),
    Action.HELP: (Y, Y, Y, Y),
    Action.VIEW: (N, Y, N, N),
    Action.ACK: (N, N, N, N),
    Action.ASSIGN: (N, N, N, N),
    Action.PRIORITY: (N, N, N, N),
    Action.NOTE: (N, Y, N, N),
    Action.RESOLVE: (N, N, N, N),
    Action.REOPEN: (N, Y, N, N),
    Action.CLOSE: (N, Y, N, N),
}
# Engineers, managers and admins work every incident, whoever reported it or holds it.
TEAM = {
    Action.REPORT: (Y, Y, Y, Y),
    Action.LIST: (Y, Y, Y, Y),
    Action.ONCALL: (Y, Y, Y, Y),
    Action.WHOAMI: (Y, Y, Y, Y),
    Action.HELP: (Y, Y, Y, Y),
    Action.VIEW: (Y, Y, Y, Y),
    Action.ACK: (Y, Y, Y, Y),
    Action.ASSIGN: (Y, Y, Y, Y),
    Action.PRIORITY: (Y, Y, Y, Y),
    Action.NOTE: (Y, Y, Y, Y),
    Action.RESOLVE: (Y, Y, Y, Y),
    Action.REOPEN: (Y, Y, Y, Y),
    Action.CLOSE: (Y, Y, Y, Y),
}
# A vendor engineer: a reporter's rights on their own report, and view, ack, note and
# resolve on what is assigned to them; never triage (assign, priority).
VENDOR = {
    Action.REPORT: (Y, Y, Y, Y),
    Action.LIST: (Y, Y, Y, Y),
    Action.ONCALL: (Y, Y, Y, Y),
    Action.WHOAMI: (Y, Y, Y, Y),
    Action.HELP: (Y, Y, Y, Y),
    Action.VIEW: (N, Y, Y, N),
    Action.ACK: (N, N, Y, N),
    Action.ASSIGN: (N, N, N, N),
    Action.PRIORITY: (N, N, N, N),
    Action.NOTE: (N, Y, Y, N),
    Action.RESOLVE: (N, N, Y, N),
    Action.REOPEN: (N, Y, N, N),
    Action.CLOSE: (N, Y, N, N),
}
EXPECTED = {
    "staff": STAFF,
    "engineer": TEAM,
    "manager": TEAM,
    "admin": TEAM,
    "vendor": VENDOR,
    "unknown": STAFF,  # somebody not in [[people]] counts as staff
}
ROLES = ("staff", "engineer", "manager", "admin", "vendor")

# What help offers: the actions a person may take on some record or other.
MAY_EVER = {
    "staff": {
        Action.REPORT,
        Action.LIST,
        Action.ONCALL,
        Action.WHOAMI,
        Action.HELP,
        Action.VIEW,
        Action.NOTE,
        Action.REOPEN,
        Action.CLOSE,
    },
    "engineer": set(Action),
    "manager": set(Action),
    "admin": set(Action),
    "vendor": {
        Action.REPORT,
        Action.LIST,
        Action.ONCALL,
        Action.WHOAMI,
        Action.HELP,
        Action.VIEW,
        Action.NOTE,
        Action.REOPEN,
        Action.CLOSE,
        Action.ACK,
        Action.RESOLVE,
    },
    "unknown": {
        Action.REPORT,
        Action.LIST,
        Action.ONCALL,
        Action.WHOAMI,
        Action.HELP,
        Action.VIEW,
        Action.NOTE,
        Action.REOPEN,
        Action.CLOSE,
    },
}


def person_with(*roles: str, name: str = "pat.test") -> Person:
    return Person(name, name, frozenset(roles))


def person_for(role: str, config) -> Person:
    if role == "unknown":
        return Directory(config).resolve("visitor.zhang")
    return person_with(role)


def incident_for(relation: str, person: Person) -> Incident | None:
    """An incident standing in ``relation`` to ``person`` (not stored anywhere)."""
    if relation == "none":
        return None
    if relation == "reported":
        return Incident(reporter=person.name, assignee="eng.other")
    if relation == "assigned":
        return Incident(reporter="nurse.other", assignee=person.name)
    return Incident(reporter="nurse.other", assignee="eng.other")


CASES = [
    pytest.param(
        role, action, relation, EXPECTED[role][action][column], id=f"{role}-{action}-{relation}"
    )
    for role in EXPECTED
    for action in Action
    for column, relation in enumerate(RELATIONS)
]


def test_the_table_covers_every_action_for_every_role():
    for role, table in EXPECTED.items():
        assert set(table) == set(Action), role
        assert all(len(row) == len(RELATIONS) for row in table.values()), role


@pytest.mark.parametrize(("role", "action", "relation", "expected"), CASES)
def test_allowed_follows_the_table(config, role, action, relation, expected):
    person = person_for(role, config)

    assert allowed(person, action, incident_for(relation, person)) is expected


def test_an_unknown_person_is_resolved_as_staff(config):
    stranger = Directory(config).resolve("visitor.zhang")

    assert stranger.known is False
    assert stranger.roles == frozenset({"staff"})


@pytest.mark.parametrize(
    ("role", "action"),
    [pytest.param(role, action, id=f"{role}-{action}") for role in EXPECTED for action in Action],
)
def test_may_ever_says_what_help_offers(config, role, action):
    person = person_for(role, config)

    assert may_ever(person, action) is (action in MAY_EVER[role])


@pytest.mark.parametrize("role", list(EXPECTED))
def test_may_ever_is_true_exactly_when_some_relation_allows_the_action(config, role):
    person = person_for(role, config)

    for action in Action:
        somewhere = any(allowed(person, action, incident_for(r, person)) for r in RELATIONS)
        assert may_ever(person, action) is somewhere, action


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(ROLES, 2)))
def test_a_person_with_two_roles_may_do_what_either_role_may(first, second):
    both = person_with(first, second)

    for action, relation in itertools.product(Action, RELATIONS):
        either = (
            EXPECTED[first][action][RELATIONS.index(relation)]
            or EXPECTED[second][action][RELATIONS.index(relation)]
        )
        assert allowed(both, action, incident_for(relation, both)) is either, (action, relation)
    for action in Action:
        assert may_ever(both, action) is (action in MAY_EVER[first] | MAY_EVER[second])


def test_a_vendor_who_is_also_a_manager_may_triage_somebody_elses_incident():
    vendor = person_with("vendor")
    vendor_manager = person_with("vendor", "manager")
    elsewhere = Incident(reporter="nurse.other", assignee="eng.other")

    assert allowed(vendor, Action.ASSIGN, elsewhere) is False
    assert allowed(vendor_manager, Action.ASSIGN, elsewhere) is True
    assert allowed(vendor_manager, Action.PRIORITY, elsewhere) is True


# --- the same policy through chat ----------------------------------------------------------


def audit_rows(app):
    with app.db.session(write=False) as s:
        return [
            (a.actor, a.action, a.record, a.result)
            for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]


def outbox_count(app) -> int:
    with app.db.session(write=False) as s:
        return s.scalar(select(func.count()).select_from(OutboxMessage)) or 0


def incident_state(app, number: int) -> tuple:
    with app.db.session(write=False) as s:
        i = s.get(Incident, number)
        return (i.status, i.priority, i.assignee, i.acknowledged_by)


def listed(shown: str) -> set[str]:
    return set(re.findall(r"\bINC-\d+\b", shown))


def report(harness, person: str, text: str) -> str:
    shown = harness.say(person, f"report {text}")
    assert "Filed INC-" in shown, shown
    return shown


def test_staff_pressing_acknowledge_on_the_card_is_refused_and_nothing_changes(harness, app):
    shown = report(harness, "nurse.li", "printer jammed at outpatient window 3")
    button = re.search(r"\[Acknowledge: (ack INC-1)\]", shown)
    assert button is not None, shown
    before, queued = incident_state(app, 1), outbox_count(app)

    shown = harness.say("nurse.li", button.group(1))

    assert "⛔ You may not acknowledge INC-1" in shown
    assert "[#ops" not in shown and "[@" not in shown
    assert incident_state(app, 1) == before
    assert before[0] == "open"
    assert outbox_count(app) == queued
    assert audit_rows(app)[-1] == ("nurse.li", "ack", "INC-1", "denied")


def test_vendor_cannot_ack_an_incident_not_assigned_to_them(harness, app):
    report(harness, "nurse.li", "HIS 处方打印格式错乱")
    queued = outbox_count(app)

    shown = harness.say("vendor.sun", "ack INC-1")

    assert "⛔ You may not acknowledge INC-1" in shown
    assert incident_state(app, 1)[0] == "open"
    assert incident_state(app, 1)[3] is None
    assert outbox_count(app) == queued
    assert audit_rows(app)[-1] == ("vendor.sun", "ack", "INC-1", "denied")


def test_vendor_assigned_an_incident_is_paged_and_may_ack_note_and_resolve_it(harness, app):
    report(harness, "nurse.li", "HIS 处方打印格式错乱")

    shown = harness.say("eng.wang", "assign INC-1 vendor.sun")
    assert "Assigned INC-1 to 孙工·HIS厂商 (vendor.sun)" in shown
    assert "[@vendor.sun]" in shown and "assigned incident INC-1" in shown
    assert "[Acknowledge: ack INC-1]" in shown.split("[@vendor.sun]", 1)[1]

    acked = harness.say("vendor.sun", "ack INC-1")
    noted = harness.say("vendor.sun", "note INC-1 patched the print service")
    resolved = harness.say("vendor.sun", "resolve INC-1 patch 2.3.1 installed")

    assert "You acknowledged INC-1" in acked
    assert "Note added to INC-1" in noted
    assert "INC-1 is resolved" in resolved
    status, _, assignee, acknowledged_by = incident_state(app, 1)
    assert (status, assignee, acknowledged_by) == ("resolved", "vendor.sun", "vendor.sun")
    assert [r for r in audit_rows(app) if r[0] == "vendor.sun"] == [
        ("vendor.sun", "ack", "INC-1", "ok"),
        ("vendor.sun", "note", "INC-1", "ok"),
        ("vendor.sun", "resolve", "INC-1", "ok"),
    ]


def test_vendor_may_not_reprioritise_or_reassign_an_incident_assigned_to_them(harness, app):
    report(harness, "nurse.li", "HIS 处方打印格式错乱")
    harness.say("eng.wang", "assign INC-1 vendor.sun")
    before, queued = incident_state(app, 1), outbox_count(app)
    other_priority = "P4" if before[1] != "P4" else "P3"

    priority = harness.say("vendor.sun", f"priority INC-1 {other_priority}")
    assign = harness.say("vendor.sun", "assign INC-1 eng.zhao")

    assert "⛔ You may not reprioritise INC-1" in priority
    assert "⛔ You may not assign INC-1" in assign
    assert incident_state(app, 1) == before
    assert outbox_count(app) == queued
    assert audit_rows(app)[-2:] == [
        ("vendor.sun", "priority", "INC-1", "denied"),
        ("vendor.sun", "assign", "INC-1", "denied"),
    ]


def test_vendor_lists_only_incidents_assigned_to_them_or_reported_by_them(harness):
    report(harness, "nurse.li", "HIS 处方打印格式错乱")  # INC-1, assigned to vendor
    report(harness, "mgr.chen", "会议室投影仪不亮")  # INC-2, nothing to do with them
    report(harness, "vendor.sun", "vendor laptop cannot reach VPN")  # INC-3, their own report
    report(harness, "nurse.li", "门诊3号窗口打印机卡纸")  # INC-4, taken by eng.wang
    harness.say("eng.wang", "assign INC-1 vendor.sun")
    harness.say("eng.wang", "ack INC-4")

    shown = harness.say("vendor.sun", "incidents all")

    assert "All incidents (2):" in shown
    assert listed(shown) == {"INC-1", "INC-3"}


def test_staff_lists_only_their_own_incidents(harness):
    report(harness, "nurse.li", "门诊3号窗口打印机卡纸")
    report(harness, "mgr.chen", "会议室投影仪不亮")
    report(harness, "nurse.li", "护士站电脑鼠标失灵")

    shown = harness.say("nurse.li", "incidents all")

    assert "All incidents (2):" in shown
    assert listed(shown) == {"INC-1", "INC-3"}


def test_an_unknown_person_lists_only_their_own_incidents(harness):
    report(harness, "nurse.li", "门诊3号窗口打印机卡纸")
    report(harness, "visitor.zhang", "示教室显示器黑屏")

    assert listed(harness.say("visitor.zhang", "incidents all")) == {"INC-2"}


def test_staff_may_not_view_somebody_elses_incident(harness, app):
    report(harness, "mgr.chen", "会议室投影仪不亮")
    queued = outbox_count(app)

    shown = harness.say("nurse.li", "incident INC-1")

    assert "⛔ You may not view INC-1" in shown
    assert "投影仪" not in shown
    assert outbox_count(app) == queued
    assert audit_rows(app)[-1] == ("nurse.li", "view", "INC-1", "denied")


def test_staff_may_view_their_own_incident(harness, app):
    report(harness, "nurse.li", "门诊3号窗口打印机卡纸")

    shown = harness.say("nurse.li", "incident INC-1")

    assert "Description: 门诊3号窗口打印机卡纸" in shown
    assert "denied" not in [r[3] for r in audit_rows(app)]
