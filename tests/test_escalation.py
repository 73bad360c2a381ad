"""Nothing unacknowledged is forgotten, even across a restart at 3 a.m."""

from __future__ import annotations

import asyncio
import io

from sqlalchemy import select, text

from rounds.bot.app import App
from rounds.bot.scheduler import JOB_DEFAULTS, JOB_TABLE, build_scheduler
from rounds.config import load_config
from rounds.db.models import AuditEntry, Incident
from rounds.handlers import jobs
from tests.conftest import Harness, write_config

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
        ("INC-1", "step 1 -> eng.zhao"),
        ("INC-1", "step 2 -> channel:managers"),
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
    assert "[@eng.zhao] ⏫" in run_job(app, harness)
    assert [d for _, d in escalations(app)] == ["step 1 -> eng.zhao", "step 1 -> eng.zhao"]


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
    assert "rounds close · auto after 72 h" in shown
    with app.db.session(write=False) as s:
        assert s.get(Incident, 2).status == "open"


def test_jobs_are_stored_once_with_stable_ids(app):
    async def start_twice() -> list[str]:
        for _ in range(2):  # a restart adds the same jobs again
            scheduler = build_scheduler(app.db, app.config)
            scheduler.start(paused=True)
            scheduler.shutdown(wait=False)
        with app.db.engine.connect() as conn:
            return sorted(conn.execute(text(f"SELECT id FROM {JOB_TABLE}")).scalars())

    assert asyncio.run(start_twice()) == ["close-resolved-incidents", "escalate-incidents"]
    assert JOB_DEFAULTS == {"coalesce": True, "misfire_grace_time": None, "max_instances": 1}


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
        assert escalations(app) == [("INC-1", "step 1 -> eng.zhao")]
    finally:
        h.close()
        app.close()
