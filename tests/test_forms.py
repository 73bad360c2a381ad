"""The guided report: a nurse who does not know what to type is led through it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from rounds.bot.app import App
from rounds.bot.core import Inbound
from rounds.db.models import Form, Incident
from rounds.handlers import jobs
from tests.conftest import Harness


def count(app: App, model) -> int:
    with app.db.session(write=False) as s:
        return s.scalar(select(func.count()).select_from(model))


def walk(harness: Harness, *answers: str, who: str = "nurse.li") -> str:
    shown = ""
    for line in answers:
        shown = harness.say(who, line)
    return shown


def test_report_without_text_leads_through_each_step_and_files(harness, app):
    assert "1/5 Which system" in harness.say("nurse.li", "report")
    assert "2/5 Where?" in harness.say("nurse.li", "pacs")  # by name, any case
    assert "3/5 How far" in harness.say("nurse.li", "放射科 CT 室")
    assert "4/5 How urgent" in harness.say("nurse.li", "3")  # one department
    assert "5/5 Describe" in harness.say("nurse.li", "U2")
    summary = harness.say("nurse.li", "影像调阅很慢，从早上开始")
    assert "Priority: P3" in summary and "Location: 放射科 CT 室" in summary

    shown = harness.say("nurse.li", "yes")

    assert "Filed INC-1 (🟡 P3): 影像调阅很慢，从早上开始" in shown
    assert "[#ops] 🟡 P3 INC-1" in shown and "[@eng.wang]" in shown
    with app.db.session(write=False) as s:
        incident = s.get(Incident, 1)
        assert (incident.system, incident.location, incident.impact, incident.urgency) == (
            "PACS",
            "放射科 CT 室",
            "I3",
            "U2",
        )
    assert count(app, Form) == 0


def test_guided_answers_still_get_the_hospital_overrides(harness, app):
    # One device that can wait would be P4, but it is in the ICU: at least P2.
    walk(harness, "report", "7", "ICU 3床旁", "4", "3", "监护站电脑键盘失灵")

    shown = harness.say("nurse.li", "yes")

    assert "(🟠 P2)" in shown


def test_a_wrong_answer_is_asked_again_and_changes_nothing(harness, app):
    harness.say("nurse.li", "report")

    shown = harness.say("nurse.li", "42")

    assert "Reply with a number from 1 to 9" in shown and "1/5 Which system" in shown
    assert "2/5" in harness.say("nurse.li", "1")
    harness.say("nurse.li", "skip")
    assert "Reply with a number from 1 to 4" in harness.say("nurse.li", "I7")


def test_cancel_leaves_at_any_step_and_records_nothing(harness, app):
    for steps in (
        [],
        ["1"],
        ["1", "skip"],
        ["1", "skip", "1"],
        ["1", "skip", "1", "1"],
        ["1", "skip", "1", "1", "收费系统打不开"],
    ):
        walk(harness, "report", *steps)

        assert "Dropped; nothing was recorded." in harness.say("nurse.li", "cancel")

    assert count(app, Incident) == 0
    assert count(app, Form) == 0
    assert "There is no form in progress." in harness.say("nurse.li", "cancel")


def test_confirming_needs_a_clear_yes(harness, app):
    walk(harness, "report", "1", "skip", "1", "1", "收费系统打不开")

    assert "Reply yes to file it, or cancel" in harness.say("nurse.li", "maybe")
    assert count(app, Incident) == 0


def test_a_form_survives_a_restart_of_the_bot(config, clock):
    first = App(config, clock=clock)
    first.upgrade()
    h = Harness(first)
    walk(h, "report", "2", "住院部5楼")
    h.close()
    first.close()

    second = App(config, clock=clock)
    h = Harness(second)
    try:
        assert "4/5" in h.say("nurse.li", "2")
        walk(h, "2", "电子病历保存失败")
        assert "Filed INC-1" in h.say("nurse.li", "yes")
    finally:
        h.close()
        second.close()


def test_an_abandoned_form_expires(harness, app, clock):
    walk(harness, "report", "1")
    clock.advance(minutes=31)

    shown = harness.say("nurse.li", "oncall")

    assert "went unanswered too long" in shown
    assert "On duty now" in shown  # the line is handled as the command it is
    assert count(app, Form) == 0


def test_abandoned_forms_are_dropped_by_the_job_and_their_owners_told(harness, app, clock):
    walk(harness, "report")
    walk(harness, "report", who="eng.zhao")
    clock.advance(minutes=29)
    assert jobs.expire_forms(app) == []
    clock.advance(minutes=2)

    dropped = jobs.expire_forms(app)
    harness.loop.run_until_complete(app.dispatcher.drain())

    assert sorted(o.person for o in dropped) == ["eng.zhao", "nurse.li"]
    assert count(app, Form) == 0
    shown = harness.out.getvalue()
    assert "[@nurse.li] Your earlier fault report went unanswered" in shown
    assert "[@eng.zhao] Your earlier fault report went unanswered" in shown


def test_a_double_tap_on_file_it_files_one_incident(harness, app):
    walk(harness, "report", "1", "skip", "1", "1", "收费系统打不开")
    person = app.env.people.resolve("nurse.li")
    tap = Inbound("console", person, "yes", chat="console")

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(app.bot.handle_sync, [tap, tap]))

    assert count(app, Incident) == 1
    texts = [r.text for replies in answers for r in replies]
    assert sum("Filed INC-1" in t for t in texts) == 1
    assert not any("INC-2" in t for t in texts)


def test_a_form_in_one_chat_does_not_capture_another_chat(harness, app):
    harness.say("nurse.li", "report")
    person = app.env.people.resolve("nurse.li")

    replies = app.bot.handle_sync(Inbound("console", person, "whoami", chat="elsewhere"))

    assert "You are 李护士·门诊 (nurse.li)" in replies[0].text
    assert "Reply with a number" in harness.say("nurse.li", "whoami")


def test_patient_identifiers_in_answers_are_masked(harness, app):
    walk(
        harness,
        "report",
        "1",
        "门诊 床号3 患者电话13812345678",
        "3",
        "2",
        "患者110101199003071234的处方打不出来",
    )
    harness.say("nurse.li", "yes")

    with app.db.session(write=False) as s:
        incident = s.get(Incident, 1)
        assert "13812345678" not in (incident.location or "")
        assert "110101199003071234" not in incident.description
