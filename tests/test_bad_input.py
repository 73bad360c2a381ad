"""Whatever people type, they get a clear sentence, and nothing changes that should not."""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import select

from rounds.commands import REGISTRY, Command
from rounds.db.models import AuditEntry, Incident, OutboxMessage
from rounds.i18n import messages
from rounds.itsm import audit
from rounds.itsm.access import Action
from rounds.reply import Reply

EN = messages("en")
MARKER = EN["incident.truncated_marker"]  # "… [too long, cut here]"
RESIDENT_ID = "110101199003071234"
RESIDENT_ID_X = "11010119900307123X"
MOBILE = "13812345678"
INPATIENT_NO = "ZY1234567"
SECRETS = (RESIDENT_ID, RESIDENT_ID_X, MOBILE, INPATIENT_NO, "1101011990")


# --- reading the tables ----------------------------------------------------------------


def incidents(app) -> list[tuple]:
    with app.db.session(write=False) as s:
        return [
            (
                i.id,
                i.status,
                i.priority,
                i.assignee,
                i.acknowledged_by,
                i.resolution,
                i.description,
            )
            for i in s.scalars(select(Incident).order_by(Incident.id))
        ]


def audit_rows(app) -> list[tuple]:
    with app.db.session(write=False) as s:
        return [
            (a.actor, a.action, a.record, a.result)
            for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]


def audit_details(app) -> list[str]:
    with app.db.session(write=False) as s:
        return [a.detail or "" for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def outbox_payloads(app) -> list[str]:
    """Every queued message, rendered as all the text a platform would show."""
    with app.db.session(write=False) as s:
        rows = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return [_all_text(Reply.from_dict(r.payload)) for r in rows]


def _all_text(reply: Reply) -> str:
    parts = [reply.text, reply.footer]
    parts += [f"{k}: {v}" for k, v in reply.fields]
    parts += [f"{b.label} {b.command}" for b in reply.buttons]
    return "\n".join(parts)


def stored(app, number: int) -> Incident:
    with app.db.session(write=False) as s:
        return s.get(Incident, number)


def snapshot(app) -> tuple:
    """The incidents, the audit trail and the outbox, to compare before and after."""
    return incidents(app), audit_rows(app), outbox_payloads(app)


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def reported(harness):
    """INC-1, reported by nurse.li and paged to the duty engineer eng.wang."""
    shown = harness.say("nurse.li", "report 门诊3号窗口打印机卡纸")
    assert "Filed INC-1" in shown
    return harness


@pytest.fixture
def acknowledged(reported):
    assert "You acknowledged INC-1" in reported.say("eng.wang", "ack INC-1")
    return reported


@pytest.fixture
def resolved(acknowledged):
    assert "INC-1 is resolved" in acknowledged.say("eng.wang", "resolve INC-1 cleared the jam")
    return acknowledged


@pytest.fixture
def closed(resolved):
    assert "INC-1 is closed" in resolved.say("nurse.li", "close INC-1")
    return resolved


# --- unknown commands --------------------------------------------------------------------


def test_a_mistyped_command_suggests_the_closest_one_and_help(reported, app):
    before = snapshot(app)

    shown = reported.say("eng.wang", "ak INC-1")

    assert "There is no command “ak”. Did you mean ack?" in shown
    assert "Type help" in shown
    assert snapshot(app) == before


def test_gibberish_gets_no_guess_but_points_to_help(reported, app):
    before = snapshot(app)

    shown = reported.say("eng.wang", "zzzz")

    assert "There is no command “zzzz”." in shown
    assert "Did you mean" not in shown
    assert "Type help" in shown
    assert snapshot(app) == before


# --- incident ids ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "token"),
    [
        ("ack INC-abc", "INC-abc"),
        ("ack INC-0", "INC-0"),
        ("incident 12x", "12x"),
        ("resolve #$% fixed", "#$%"),
    ],
)
def test_a_malformed_incident_id_is_named_and_refused(reported, app, line, token):
    before = snapshot(app)

    shown = reported.say("eng.wang", line)

    assert f"“{token}” is not an incident id; ids look like INC-12." in shown
    assert snapshot(app) == before


def test_an_incident_that_does_not_exist_is_named(reported, app):
    before = snapshot(app)

    shown = reported.say("eng.wang", "ack INC-999")

    assert "There is no incident INC-999." in shown
    assert snapshot(app) == before


@pytest.mark.parametrize("line", ["ack inc-1", "ack 1", "ack Inc-1"])
def test_incident_ids_are_case_insensitive_and_the_prefix_optional(reported, app, line):
    shown = reported.say("eng.wang", line)

    assert "You acknowledged INC-1" in shown
    assert stored(app, 1).status == "acknowledged"


# --- missing and wrong arguments ---------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "sentence"),
    [
        ("assign", "Something is missing. Usage: assign <id> <person>"),
        ("assign INC-1", "Something is missing. Usage: assign <id> <person>"),
        ("priority INC-1", "Something is missing. Usage: priority <id> P1|P2|P3|P4"),
        ("resolve INC-1", "Say what fixed it: resolve INC-1 <what you did>"),
        ("note INC-1", "Write the note: note INC-1 <text>"),
        ("incident", "Something is missing. Usage: incident <id>"),
    ],
)
def test_a_missing_argument_gets_the_usage_and_changes_nothing(reported, app, line, sentence):
    before = snapshot(app)

    shown = reported.say("eng.wang", line)

    assert sentence in shown
    assert snapshot(app) == before


@pytest.mark.parametrize(
    ("line", "sentence"),
    [
        ("priority INC-1 P9", "“P9” is not a priority; use P1, P2, P3 or P4."),
        ("assign INC-1 nobody.here", "There is nobody called “nobody.here” in the people list."),
        (
            "assign INC-1 nurse.li",
            "李护士·门诊 (nurse.li) is neither an engineer nor a vendor "
            "engineer and cannot be assigned incidents.",
        ),
        ("incidents bogus", "There is no list called “bogus”; use open, mine or all."),
    ],
)
def test_a_wrong_argument_is_explained_and_changes_nothing(reported, app, line, sentence):
    before = snapshot(app)

    shown = reported.say("eng.wang", line)

    assert sentence in shown
    assert snapshot(app) == before


# --- reports -----------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["report", "report    ", "report \t ", "report \u202e"])
def test_a_report_without_text_starts_the_guided_form_and_files_nothing(harness, app, line):
    shown = harness.say("nurse.li", line)

    assert EN["form.start"] in shown  # "... a few questions. Type cancel at any time ..."
    assert EN["form.ask_system"] in shown
    assert "Sorry" not in shown
    assert snapshot(app) == ([], [], [])


def test_a_very_long_report_is_filed_cut_at_max_text_and_the_reporter_is_told(harness, app):
    limit = app.config.incidents.max_text
    text = ("门诊3号窗口打印机卡纸，" + "打印队列里有很多任务没有出纸。" * 2000)[:20_000]

    shown = harness.say("nurse.li", f"report {text}")

    assert "Filed INC-1" in shown
    assert f"It was longer than {limit} characters" in shown
    description = stored(app, 1).description
    assert limit == 4000
    assert len(description) <= limit
    assert description.endswith(MARKER)
    assert description.startswith("门诊3号窗口打印机卡纸")


def test_control_and_bidi_characters_are_removed_and_the_report_is_still_filed(harness, app):
    shown = harness.say("nurse.li", "report 打印机\x00卡纸\x07，\x1b窗口\u202e3号\u2066门诊\u2069")

    assert "Removed 6 control or text-direction character(s)" in shown
    assert "Filed INC-1" in shown
    description = stored(app, 1).description
    assert description == "打印机卡纸，窗口3号门诊"
    for payload in outbox_payloads(app):
        assert not re.search("[\x00-\x08\x0b-\x1f\u202a-\u202e\u2066-\u2069]", payload)


# --- patient identifiers -----------------------------------------------------------------

IDENTIFYING_REPORT = (
    f"report 门诊收费处电脑蓝屏，患者{RESIDENT_ID}在等，"
    f"家属电话{MOBILE}联系，住院号:{INPATIENT_NO}"
)


def assert_nothing_identifying(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every log record as a handler would write it, tracebacks included."""
    formatter = logging.Formatter("%(message)s")
    return "\n".join(formatter.format(r) for r in caplog.records)


def test_patient_identifiers_in_a_report_are_masked_everywhere(harness, app, caplog):
    caplog.set_level(logging.DEBUG)

    shown = harness.say("nurse.li", IDENTIFYING_REPORT)

    assert "Your message held 3 possible patient identifier(s)" in shown
    assert "Filed INC-1" in shown
    incident = stored(app, 1)
    assert incident.description == (
        "门诊收费处电脑蓝屏，患者[masked]在等，家属电话[masked]联系，住院号:[masked]"
    )
    assert incident.title == incident.description
    assert_nothing_identifying(shown)
    assert_nothing_identifying("\n".join(audit_details(app)))
    payloads = outbox_payloads(app)
    assert payloads and all("[masked]" in p for p in payloads)
    assert_nothing_identifying("\n".join(payloads))
    assert caplog.records
    assert_nothing_identifying(logged_text(caplog))


def test_patient_identifiers_in_notes_and_resolutions_are_masked_everywhere(
    acknowledged, app, caplog
):
    caplog.set_level(logging.DEBUG)

    noted = acknowledged.say(
        "eng.wang", f"note INC-1 患者{RESIDENT_ID_X}的单据已补打，电话{MOBILE}联系过"
    )
    fixed = acknowledged.say(
        "eng.wang", f"resolve INC-1 已为住院号:{INPATIENT_NO}重打，通知了{MOBILE}"
    )

    assert "Your message held 2 possible patient identifier(s)" in noted
    assert "Your message held 2 possible patient identifier(s)" in fixed
    assert stored(app, 1).resolution == "已为住院号:[masked]重打，通知了[masked]"
    details = audit_details(app)
    assert "患者[masked]的单据已补打，电话[masked]联系过" in details
    assert "已为住院号:[masked]重打，通知了[masked]" in details
    for text in (
        noted,
        fixed,
        "\n".join(details),
        "\n".join(outbox_payloads(app)),
        logged_text(caplog),
    ):
        assert_nothing_identifying(text)
    assert any("通知了[masked]" in p for p in outbox_payloads(app))


# --- acting on the wrong state -----------------------------------------------------------


def assert_refused(app, before: tuple, person: str, action: str) -> None:
    """Refused by state: audited once as refused, no incident changed, nothing queued."""
    incidents_before, audit_before, outbox_before = before
    assert incidents(app) == incidents_before
    assert audit_rows(app) == [*audit_before, (person, action, "INC-1", audit.REFUSED)]
    assert outbox_payloads(app) == outbox_before


def test_resolving_a_resolved_incident_is_refused(resolved, app):
    before = snapshot(app)

    shown = resolved.say("eng.wang", "resolve INC-1 cleared it again")

    assert "INC-1 is resolved; it cannot be resolved." in shown
    assert_refused(app, before, "eng.wang", "resolve")


def test_an_engineer_closing_an_open_incident_is_asked_to_resolve_it_first(reported, app):
    before = snapshot(app)

    shown = reported.say("eng.wang", "close INC-1")

    assert "INC-1 is not resolved yet; resolve it before closing" in shown
    assert_refused(app, before, "eng.wang", "close")


def test_the_reporter_closing_an_open_incident_is_told_to_wait_for_the_fix(reported, app):
    before = snapshot(app)

    shown = reported.say("nurse.li", "close INC-1")

    assert "INC-1 is not resolved yet; you will be told when it is" in shown
    assert "resolve INC-1" not in shown
    assert_refused(app, before, "nurse.li", "close")


def test_reopening_an_open_incident_is_refused(reported, app):
    before = snapshot(app)

    shown = reported.say("nurse.li", "reopen INC-1 still jammed")

    assert "INC-1 is open; only a resolved incident can be reopened." in shown
    assert_refused(app, before, "nurse.li", "reopen")


def test_acknowledging_twice_tells_the_engineer_they_already_did(acknowledged, app):
    before = snapshot(app)

    shown = acknowledged.say("eng.wang", "ack INC-1")

    assert "You already acknowledged INC-1 (12-03 10:00)." in shown
    assert_refused(app, before, "eng.wang", "ack")


@pytest.mark.parametrize(
    ("person", "line", "action"),
    [
        ("eng.wang", "ack INC-1", "ack"),
        ("eng.wang", "assign INC-1 eng.zhao", "assign"),
        ("eng.wang", "priority INC-1 P1", "priority"),
        ("eng.wang", "note INC-1 one more thing", "note"),
        ("eng.wang", "resolve INC-1 cleared it again", "resolve"),
        ("nurse.li", "reopen INC-1 jammed again", "reopen"),
        ("nurse.li", "close INC-1", "close"),
    ],
)
def test_anything_on_a_closed_incident_is_refused_as_closed(closed, app, person, line, action):
    before = snapshot(app)

    shown = closed.say(person, line)

    assert re.search(r"INC-1 is (already )?closed", shown), shown
    assert_refused(app, before, person, action)


# --- unexpected errors -------------------------------------------------------------------


@pytest.fixture
def exploding_command():
    """A command whose handler writes an audit row and then fails as a bug would."""

    def explode(ctx):
        audit.record(
            ctx.session,
            at=ctx.env.now(),
            actor=ctx.person.name,
            action="note",
            record="INC-1",
            via=ctx.via,
        )
        raise RuntimeError("disk on fire /var/lib/rounds")

    REGISTRY["explode"] = Command("explode", explode, Action.HELP, write=True)
    yield "explode"
    REGISTRY.pop("explode", None)


def test_an_unexpected_error_shows_an_apology_with_a_token_never_a_traceback(
    reported, app, caplog, exploding_command
):
    caplog.set_level(logging.DEBUG)
    before = snapshot(app)

    shown = reported.say("eng.wang", exploding_command)

    found = re.search(r"Quote reference ([0-9a-f]{8}) to the IT department", shown)
    assert found, shown
    assert shown.startswith("😔 Sorry, something went wrong on our side")
    assert "Traceback" not in shown and "disk on fire" not in shown
    token = found.group(1)
    logged = [r for r in caplog.records if token in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is RuntimeError
    assert "Traceback" in logging.Formatter().format(logged[0])
    assert snapshot(app) == before  # the half-done change was rolled back


def test_a_database_error_never_writes_incident_text_to_the_log(harness, app, caplog):
    """An error while storing a report is logged with its traceback, without its words."""
    caplog.set_level(logging.DEBUG)
    words = "病人张三在收费窗口等着 secret-words"
    with app.db.engine.begin() as conn:  # every insert into incidents now fails
        conn.exec_driver_sql("ALTER TABLE incidents RENAME TO incidents_away")

    shown = harness.say("nurse.li", f"report {words}")

    assert "Sorry, something went wrong" in shown
    assert any(r.exc_info for r in caplog.records)
    assert "secret-words" not in logged_text(caplog)
    assert "张三" not in logged_text(caplog)
