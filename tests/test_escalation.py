"""Nothing unacknowledged is forgotten, even across a restart at 3 a.m."""

from __future__ import annotations

import asyncio
import io
from datetime import datetime

from sqlalchemy import select, text

from rounds.bot.app import App
from rounds.bot.scheduler import JOB_TABLE, build_scheduler
from rounds.config import load_config
from rounds.db.models import AuditEntry, Incident
from rounds.handlers import jobs
from tests.conftest import SHANGHAI, Harness, write_config

HIS_DOWN = "report HIS 收费系统无法登录"  # P1: acknowledge within 5 minutes


def escalations(app: App) -> list[tuple[str, str]]:
    with app.db.session(write=False) as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action == "escalate"))
        return [(a.record, a.detail) for a in rows]


def run_job(app: App, harness: Harness) -> str:
    """Run the escalation job once, deliver what it queued, return what was shown."""
    start = harness.out.tell()
    jobs.escalate_step(app)
    harness.loop.run_until_complete(app.dispatcher.drain())
    harness.out.seek(start)
    shown = harness.out.read()
    harness.out.seek(0, io.SEEK_END)
    return shown


def test_unacknowledged_p1_escalates_to_the_next_engineer_then_the_managers(harness, app, clock):
    harness.say("nurse.li", HIS_DOWN)

    clock.advance(minutes=4, seconds=59)
    assert run_job(app, harness) == ""

    clock.advance(seconds=2)
    shown = run_job(app, harness)
    assert "[@eng.zhao] ⏫ Escalated to you" in shown and "ack INC-1" in shown
    assert "[#ops ↳ c1] INC-1 · ⏫ no acknowledgement for 5 minutes" in shown
    assert "[#managers]" not in shown

    clock.advance(minutes=5)
    shown = run_job(app, harness)
    assert "[#managers] ⏫ INC-1 (P1)" in shown and "王工 (eng.wang)" in shown

    clock.advance(hours=2)
    assert run_job(app, harness) == ""
    assert escalations(app) == [
        ("INC-1", "step=1 target=eng.zhao"),
        ("INC-1", "step=2 target=channel:managers"),
    ]


def test_a_bare_ack_after_escalation_takes_the_escalated_incident(harness, app, clock):
    harness.say("nurse.li", HIS_DOWN)
    clock.advance(minutes=6)
    run_job(app, harness)

    shown = harness.say("eng.zhao", "ack")

    assert "You acknowledged INC-1" in shown


def test_acknowledging_stops_escalation(harness, app, clock):
    harness.say("nurse.li", HIS_DOWN)
    harness.say("eng.wang", "ack INC-1")

    clock.advance(hours=1)

    assert run_job(app, harness) == ""
    assert escalations(app) == []


def test_reopening_starts_escalation_again(harness, app, clock):
    harness.say("nurse.li", HIS_DOWN)
    clock.advance(minutes=6)
    run_job(app, harness)
    harness.say("eng.zhao", "resolve INC-1 restarted the application server")
    harness.say("nurse.li", "reopen INC-1 still cannot log in")

    clock.advance(minutes=4)
    assert run_job(app, harness) == ""
    clock.advance(minutes=2)
    # eng.zhao took it and was paged again on the reopen; the duty engineer hears next.
    assert "[@eng.wang] ⏫" in run_job(app, harness)
    assert [d for _, d in escalations(app)] == ["step=1 target=eng.zhao", "step=1 target=eng.wang"]


def test_fractions_of_a_minute_are_honoured(tmp_path, clock):
    config = load_config(
        write_config(
            tmp_path / "r.toml",
            "[escalation]\nack_minutes = { P1 = 0.5, P2 = 1, P3 = 2, P4 = 4 }\n",
        ),
        environ={},
    )
    app = App(config, clock=clock)
    app.upgrade()
    h = Harness(app)
    try:
        h.say("nurse.li", HIS_DOWN)
        clock.advance(seconds=29)
        assert run_job(app, h) == ""
        clock.advance(seconds=2)
        assert "⏫" in run_job(app, h)
    finally:
        h.close()
        app.close()


def test_a_new_priority_restarts_the_window(harness, app, clock):
    harness.say("nurse.li", "report 门诊3号窗口打印机卡纸")  # P4: 240 minutes
    clock.advance(minutes=200)
    harness.say("eng.wang", "priority INC-1 P1")

    clock.advance(minutes=4)
    assert run_job(app, harness) == ""
    clock.advance(minutes=2)
    assert "⏫" in run_job(app, harness)


def test_a_restart_neither_forgets_nor_repeats_a_step(config, clock):
    first = App(config, clock=clock)
    first.upgrade()
    h = Harness(first)
    h.say("nurse.li", HIS_DOWN)
    clock.advance(minutes=6)
    assert jobs.escalate_step(first)  # step 1 taken
    h.close()
    first.close()

    second = App(config, clock=clock)  # the bot comes back
    try:
        assert jobs.escalate_step(second) == []  # step 1 is not taken again
        clock.advance(minutes=5)
        assert [(e.ref, e.step) for e in jobs.escalate_step(second)] == [("INC-1", 2)]
        assert jobs.escalate_step(second) == []
        with second.db.session(write=False) as s:
            incident = s.get(Incident, 1)
            assert (incident.escalation_step, incident.escalate_at) == (2, None)
    finally:
        second.close()


def test_a_resolved_incident_closes_itself_unless_reopened(harness, app, clock):
    harness.say("nurse.li", "report 门诊3号窗口打印机卡纸")
    harness.say("nurse.li", "report 二楼护士站打印机卡纸")
    harness.say("eng.wang", "resolve INC-1 cleared the jam")
    shown = harness.say("eng.wang", "resolve INC-2 cleared the jam")
    assert "closes by itself in 72 hours" in shown
    harness.say("nurse.li", "reopen INC-2 jammed again")

    clock.advance(hours=71)
    assert jobs.close_resolved(app) == []
    clock.advance(hours=2)
    assert jobs.close_resolved(app) == ["INC-1"]
    shown = harness.say("nurse.li", "incident INC-1")

    assert "Status: closed" in shown
    assert "rounds close · closed automatically 72 hours after it was resolved" in shown
    with app.db.session(write=False) as s:
        assert s.get(Incident, 2).status == "open"


def test_jobs_are_stored_once_with_stable_ids_coalesced_and_never_overlapping(app):
    async def start_twice() -> list:
        for _ in range(2):  # a restart adds the same jobs again
            scheduler = build_scheduler(app.db, app.config)
            scheduler.start(paused=True)
            jobs_seen = scheduler.get_jobs()
            scheduler.shutdown(wait=False)
        with app.db.engine.connect() as conn:
            stored = sorted(conn.execute(text(f"SELECT id FROM {JOB_TABLE}")).scalars())
        return stored, jobs_seen

    stored, seen = asyncio.run(start_twice())

    assert stored == [
        "close-resolved-incidents",
        "escalate-incidents",
        "expire-abandoned-forms",
        "prune-delivered-rows",
    ]
    assert {(j.coalesce, j.misfire_grace_time, j.max_instances) for j in seen} == {(True, None, 1)}


def test_the_running_bot_escalates_on_its_own(tmp_path, clock):
    config = load_config(
        write_config(
            tmp_path / "r.toml",
            '[http]\nlisten = "127.0.0.1:0"\n[escalation]\ncheck_seconds = 1\n',
        ),
        environ={},
    )
    app = App(config, clock=clock)
    app.upgrade()
    h = Harness(app)
    h.say("nurse.li", HIS_DOWN)
    clock.advance(minutes=6)

    async def serve_until_escalated() -> None:
        stop = asyncio.Event()
        server = asyncio.create_task(app.serve(None, io.StringIO(), stop))
        try:
            for _ in range(100):  # up to 10 s for the 1-second job to fire
                if escalations(app):
                    return
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await server

    try:
        asyncio.run(serve_until_escalated())
        assert escalations(app) == [("INC-1", "step=1 target=eng.zhao")]
    finally:
        h.close()
        app.close()


def test_after_a_handover_the_new_duty_engineer_is_paged(harness, app, clock):
    clock.set(datetime(2026, 12, 4, 7, 57, tzinfo=SHANGHAI))  # eng.wang's last minutes
    harness.say("nurse.li", HIS_DOWN)

    clock.advance(minutes=6)  # 08:03: eng.zhao took over at 08:00
    shown = run_job(app, harness)

    assert "[@eng.zhao] ⏫" in shown
    assert "[@eng.wang]" not in shown


def test_nobody_left_to_page_goes_to_the_managers_once(tmp_path, clock):
    config = load_config(
        write_config(tmp_path / "r.toml", '[oncall]\nrotation = ["eng.wang"]\n'), environ={}
    )
    app = App(config, clock=clock)
    app.upgrade()
    h = Harness(app)
    try:
        h.say("nurse.li", HIS_DOWN)
        clock.advance(minutes=6)
        assert "[#managers] ⏫ INC-1 (P1)" in run_job(app, h)
        clock.advance(hours=1)
        assert run_job(app, h) == ""
        assert escalations(app) == [("INC-1", "step=1 target=channel:managers")]
    finally:
        h.close()
        app.close()


def test_the_reporter_and_the_assignee_are_never_the_escalation_target(harness, app, clock):
    harness.say("eng.zhao", "report HIS 收费系统无法登录")  # eng.wang on duty is paged
    clock.advance(minutes=6)

    shown = run_job(app, harness)

    assert "[@eng.zhao]" not in shown
    assert "[#managers] ⏫" in shown
