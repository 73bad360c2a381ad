"""A fault's life in the console, as the people involved would drive it."""

from __future__ import annotations

from sqlalchemy import select

from rounds.db.models import AuditEntry, Incident


def audit_rows(app):
    with app.db.session(write=False) as s:
        return [
            (a.actor, a.action, a.record, a.result)
            for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]


def test_staff_report_reaches_ops_channel_and_duty_engineer(harness, app):
    shown = harness.say("nurse.li", "report printer jammed at outpatient window 3")

    assert "Filed INC-1" in shown
    assert "[#ops] 🔵 P4 INC-1 printer jammed at outpatient window 3" in shown
    assert "[Acknowledge: ack INC-1]" in shown
    assert "[@eng.wang]" in shown and "New incident INC-1" in shown
    assert "[#managers]" not in shown
    assert audit_rows(app) == [("nurse.li", "report", "INC-1", "ok")]


def test_engineer_acknowledges_and_reporter_is_told(harness, app):
    harness.say("nurse.li", "report printer jammed at outpatient window 3")

    shown = harness.say("eng.wang", "ack")

    assert "You acknowledged INC-1" in shown
    assert "[#ops ✎ c1]" in shown and "Status: acknowledged" in shown
    assert "[@nurse.li] 👷 Your report INC-1" in shown and "王工 (eng.wang)" in shown
    with app.db.session(write=False) as s:
        incident = s.get(Incident, 1)
        assert (incident.status, incident.assignee) == ("acknowledged", "eng.wang")


def test_second_engineer_is_told_who_was_first(harness, app):
    harness.say("nurse.li", "report printer jammed at outpatient window 3")
    harness.say("eng.zhao", "ack INC-1")

    shown = harness.say("eng.wang", "ack inc-1")

    assert "INC-1 was already acknowledged by 赵工 (eng.zhao) at 12-03 10:00." in shown
    assert "[#ops" not in shown
    assert audit_rows(app)[-1] == ("eng.wang", "ack", "INC-1", "refused")
