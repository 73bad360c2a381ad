"""The outbox and its dispatcher: order, edits, threads, retries, leases and races.

Messages are queued as outbox rows for a fake platform (or through the domain's
``notify``/``update`` for the console) and delivered by :class:`Dispatcher` to small fake
senders that record what they were given. Time is a FakeClock and moves only when told.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from rounds.bot.console import ConsoleSender
from rounds.bot.dispatcher import (
    LEASE,
    MAX_BACKOFF,
    PERMANENT_ATTEMPTS,
    Dispatcher,
    Outgoing,
    SendError,
    pending_count,
    prune,
)
from rounds.db.engine import Database
from rounds.db.models import MessageRef, OutboxMessage
from rounds.handlers import jobs
from rounds.itsm import notify as outbox
from rounds.reply import Reply

FAKE = "fake"


# --- helpers ---------------------------------------------------------------------------


def queue(
    app,
    address: str,
    text: str,
    *,
    op: str = "post",
    ref_key: str | None = None,
    thread_key: str | None = None,
    platform: str = FAKE,
) -> int:
    """Queue one outbox row as the domain would; return its id."""
    now = app.env.now()
    with app.db.session() as s:
        row = OutboxMessage(
            platform=platform,
            address=address,
            op=op,
            ref_key=ref_key,
            thread_key=thread_key,
            payload=Reply(text).to_dict(),
            status="pending",
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
        s.add(row)
        s.flush()
        return row.id


def queue_many(app, addresses: list[str], per_address: int) -> dict[int, str]:
    """Queue messages round-robin over ``addresses``; return {row id: address}."""
    queued: dict[int, str] = {}
    for n in range(per_address):
        for address in addresses:
            queued[queue(app, address, f"{address} #{n}")] = address
    return queued


@dataclass(frozen=True)
class Row:
    id: int
    address: str
    op: str
    status: str
    attempts: int
    next_attempt_at: datetime
    claimed_by: str | None
    claimed_until: datetime | None
    sent_at: datetime | None
    platform_message_id: str | None
    last_error: str | None


def load(app, row_id: int) -> Row:
    with app.db.session(write=False) as s:
        r = s.get(OutboxMessage, row_id)
        assert r is not None
        return Row(
            r.id,
            r.address,
            r.op,
            r.status,
            r.attempts,
            r.next_attempt_at,
            r.claimed_by,
            r.claimed_until,
            r.sent_at,
            r.platform_message_id,
            r.last_error,
        )


def all_rows(app) -> list[Row]:
    with app.db.session(write=False) as s:
        ids = s.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id)).all()
    return [load(app, i) for i in ids]


def stored_ref(app, address: str, key: str, platform: str = FAKE) -> str | None:
    with app.db.session(write=False) as s:
        return s.scalar(
            select(MessageRef.message_id).where(
                MessageRef.platform == platform,
                MessageRef.address == address,
                MessageRef.ref_key == key,
            )
        )


class FakeSender:
    """Records every attempt; raises the planned exceptions for a row, then accepts it."""

    def __init__(
        self,
        plan: dict[int, list[BaseException]] | None = None,
        always: dict[int, BaseException] | None = None,
    ) -> None:
        self.plan = {k: list(v) for k, v in (plan or {}).items()}
        self.always = dict(always or {})
        self.attempts: list[Outgoing] = []
        self.delivered: list[Outgoing] = []
        self.returned: dict[int, str] = {}

    async def send(self, item: Outgoing) -> str:
        self.attempts.append(item)
        if item.id in self.always:
            raise self.always[item.id]
        if self.plan.get(item.id):
            raise self.plan[item.id].pop(0)
        self.delivered.append(item)
        message_id = f"msg-{item.id}-try{item.attempts}"
        self.returned[item.id] = message_id
        return message_id

    def delivered_ids(self) -> list[int]:
        return [i.id for i in self.delivered]


def dispatcher(app, clock, sender, **kwargs) -> Dispatcher:
    return Dispatcher(app.db, clock, {FAKE: sender}, **kwargs)


def drain(d: Dispatcher) -> int:
    return asyncio.run(d.drain())


def run_once(d: Dispatcher) -> int:
    return asyncio.run(d.run_once())


def seconds_between(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


# --- order -----------------------------------------------------------------------------


def test_each_conversation_receives_its_messages_in_queue_order_exactly_once(app, clock):
    queued = {}
    for n in range(4):
        queued[queue(app, "#ops", f"ops {n}")] = "#ops"
        if n < 3:
            queued[queue(app, "@eng.wang", f"wang {n}")] = "@eng.wang"
        if n < 2:
            queued[queue(app, "#managers", f"managers {n}")] = "#managers"
    sender = FakeSender()

    drain(dispatcher(app, clock, sender))

    assert sorted(sender.delivered_ids()) == sorted(queued)  # each once, none lost
    by_address: dict[str, list[int]] = defaultdict(list)
    for item in sender.delivered:
        by_address[item.address].append(item.id)
    for address in ("#ops", "@eng.wang", "#managers"):
        expected = [i for i, a in queued.items() if a == address]
        assert by_address[address] == expected
    texts = [i.message.text for i in sender.delivered if i.address == "#ops"]
    assert texts == ["ops 0", "ops 1", "ops 2", "ops 3"]
    assert {r.status for r in all_rows(app)} == {"sent"}
    assert pending_count(app.db) == (0, None)


def test_claim_returns_only_the_oldest_unsent_message_of_each_conversation(app, clock):
    a1, _a2, _a3 = (queue(app, "#a", f"a{n}") for n in range(3))
    b1, _b2 = (queue(app, "#b", f"b{n}") for n in range(2))
    d = dispatcher(app, clock, FakeSender())

    first = d.claim()

    assert [i.id for i in first] == [a1, b1]
    assert [load(app, i).status for i in (a1, b1)] == ["sending", "sending"]
    # The heads are being sent: nothing else of those conversations may go meanwhile.
    assert d.claim() == []
    assert Dispatcher(app.db, clock, {FAKE: FakeSender()}).claim() == []


def test_a_message_waiting_for_its_retry_holds_up_only_its_own_conversation(app, clock):
    a1, a2 = queue(app, "#a", "a1"), queue(app, "#a", "a2")
    b1, b2 = queue(app, "#b", "b1"), queue(app, "#b", "b2")
    sender = FakeSender(plan={a1: [SendError("rate limited", retry_after=60)]})
    d = dispatcher(app, clock, sender)

    drain(d)

    assert sender.delivered_ids() == [b1, b2]
    assert load(app, a2).status == "pending"
    clock.advance(seconds=59)
    assert drain(d) == 0

    clock.advance(seconds=1)
    drain(d)

    assert sender.delivered_ids() == [b1, b2, a1, a2]


# --- edits and threads -----------------------------------------------------------------


def test_edit_waits_until_its_post_is_sent(app, clock):
    post = queue(app, "#ops", "INC-1 open", ref_key="incident:1")
    edit = queue(app, "#ops", "INC-1 acknowledged", op="edit", ref_key="incident:1")
    sender = FakeSender(plan={post: [SendError("timeout")]})
    d = dispatcher(app, clock, sender)

    drain(d)

    assert [i.id for i in sender.attempts] == [post]  # the edit was not even tried
    assert sender.delivered == []
    assert load(app, edit).status == "pending"
    assert stored_ref(app, "#ops", "incident:1") is None

    clock.advance(seconds=10)
    drain(d)

    assert sender.delivered_ids() == [post, edit]
    post_id = sender.returned[post]
    delivered_edit = sender.delivered[1]
    assert delivered_edit.op == "edit"
    assert delivered_edit.edit_of == post_id
    assert delivered_edit.message.text == "INC-1 acknowledged"
    assert sender.delivered[0].edit_of is None
    assert stored_ref(app, "#ops", "incident:1") == post_id
    assert load(app, post).platform_message_id == post_id


def test_edit_of_a_post_that_went_dead_is_still_delivered_without_edit_of(app, clock):
    post = queue(app, "#ops", "INC-1 open", ref_key="incident:1")
    edit = queue(app, "#ops", "INC-1 resolved", op="edit", ref_key="incident:1")
    sender = FakeSender(always={post: SendError("forbidden", permanent=True, retry_after=1)})
    d = dispatcher(app, clock, sender)

    for _ in range(PERMANENT_ATTEMPTS):
        drain(d)
        clock.advance(seconds=1)

    assert load(app, post).status == "dead"
    assert sender.delivered_ids() == [edit]
    assert sender.delivered[0].op == "edit"
    assert sender.delivered[0].edit_of is None
    assert load(app, edit).status == "sent"


def test_threaded_message_gets_thread_of_from_its_parents_stored_id(app, clock):
    parent = queue(app, "#ops", "INC-1 open", ref_key="incident:1")
    reply = queue(app, "#ops", "engineer on the way", thread_key="incident:1")
    elsewhere = queue(app, "#managers", "same key, other place", thread_key="incident:1")
    orphan = queue(app, "#ops", "parent never queued", thread_key="incident:99")
    sender = FakeSender(plan={parent: [SendError("timeout", retry_after=5)]})
    d = dispatcher(app, clock, sender)

    drain(d)
    clock.advance(seconds=5)
    drain(d)

    got = {i.id: i for i in sender.delivered}
    assert set(got) == {parent, reply, elsewhere, orphan}
    assert got[parent].thread_of is None
    assert got[reply].thread_of == sender.returned[parent]
    assert got[elsewhere].thread_of is None  # a key names a message in one conversation
    assert got[orphan].thread_of is None


# --- failures and retries --------------------------------------------------------------


def test_transient_failure_backs_off_exponentially_and_is_not_claimed_before_due(app, clock):
    row = queue(app, "#ops", "hello")
    sender = FakeSender(plan={row: [SendError("503"), SendError("503"), SendError("503")]})
    d = dispatcher(app, clock, sender)

    for attempt in (1, 2, 3):
        failed_at = clock.now()
        assert run_once(d) == 1
        r = load(app, row)
        assert (r.status, r.attempts, r.last_error) == ("pending", attempt, "503")
        assert r.claimed_by is None and r.claimed_until is None
        base = 2.0 ** (attempt - 1)
        delay = seconds_between(r.next_attempt_at, failed_at)
        assert 0.8 * base - 1e-6 <= delay <= 1.2 * base + 1e-6
        clock.set(r.next_attempt_at - timedelta(microseconds=1))
        assert d.claim() == []
        clock.set(r.next_attempt_at)

    assert run_once(d) == 1
    r = load(app, row)
    assert (r.status, r.attempts, r.last_error) == ("sent", 4, None)
    assert [i.attempts for i in sender.attempts] == [1, 2, 3, 4]
    assert sender.delivered_ids() == [row]


def test_retry_after_is_honoured_exactly(app, clock):
    row = queue(app, "#ops", "hello")
    sender = FakeSender(plan={row: [SendError("429", retry_after=12.5)]})
    d = dispatcher(app, clock, sender)
    failed_at = clock.now()

    assert run_once(d) == 1

    r = load(app, row)
    assert r.next_attempt_at == failed_at + timedelta(seconds=12.5)
    assert (r.status, r.attempts) == ("pending", 1)
    clock.advance(seconds=12.499999)
    assert drain(d) == 0
    clock.advance(microseconds=1)
    assert drain(d) == 1
    assert sender.delivered_ids() == [row]
    assert load(app, row).attempts == 2


def test_transient_failures_are_retried_beyond_the_permanent_limit(app, clock):
    row = queue(app, "#ops", "hello")
    failures = 2 * PERMANENT_ATTEMPTS
    sender = FakeSender(plan={row: [SendError("503", retry_after=1)] * failures})
    d = dispatcher(app, clock, sender)

    for attempt in range(1, failures + 1):
        assert run_once(d) == 1
        assert (load(app, row).status, load(app, row).attempts) == ("pending", attempt)
        clock.advance(seconds=1)
    drain(d)

    assert sender.delivered_ids() == [row]
    assert (load(app, row).status, load(app, row).attempts) == ("sent", failures + 1)


def test_backoff_never_exceeds_the_five_minute_cap(app, clock, monkeypatch):
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # the worst jitter
    row = queue(app, "#ops", "hello")
    sender = FakeSender(always={row: SendError("503")})
    d = dispatcher(app, clock, sender)

    delays = []
    for _ in range(10):
        failed_at = clock.now()
        assert run_once(d) == 1
        r = load(app, row)
        delays.append(seconds_between(r.next_attempt_at, failed_at))
        clock.set(r.next_attempt_at)

    assert load(app, row).attempts == 10
    assert max(delays) <= MAX_BACKOFF


def test_permanent_failure_goes_dead_after_five_attempts_and_stops_blocking(app, clock):
    refused = queue(app, "#ops", "to a channel we may not post in")
    later = queue(app, "#ops", "next message")
    sender = FakeSender(always={refused: SendError("not_in_channel", permanent=True)})
    d = dispatcher(app, clock, sender)

    for attempt in range(1, PERMANENT_ATTEMPTS):
        assert run_once(d) == 1
        r = load(app, refused)
        assert (r.status, r.attempts) == ("pending", attempt)  # retried, not given up yet
        assert load(app, later).status == "pending"
        clock.set(r.next_attempt_at)
    assert run_once(d) == 1

    r = load(app, refused)
    assert (r.status, r.attempts, r.last_error) == ("dead", PERMANENT_ATTEMPTS, "not_in_channel")
    assert [i.id for i in sender.attempts] == [refused] * PERMANENT_ATTEMPTS
    drain(d)
    assert sender.delivered_ids() == [later]
    clock.advance(hours=1)
    assert drain(d) == 0  # a dead message is not tried again
    assert pending_count(app.db)[0] == 0


def test_sender_that_raises_puts_the_message_back_and_it_is_delivered_later(app, clock):
    row = queue(app, "#ops", "hello")
    sender = FakeSender(plan={row: [RuntimeError("connection reset by a sender bug")]})
    d = dispatcher(app, clock, sender)

    assert drain(d) == 1

    r = load(app, row)
    assert (r.status, r.attempts, r.claimed_by) == ("pending", 1, None)
    assert r.last_error == "RuntimeError"
    assert r.next_attempt_at > clock.now()
    clock.set(r.next_attempt_at)
    drain(d)
    assert sender.delivered_ids() == [row]
    assert load(app, row).status == "sent"


# --- recording and leases --------------------------------------------------------------


def test_mark_sent_records_status_time_and_platform_id(app, clock):
    row = queue(app, "#ops", "hello", ref_key="incident:1")
    d = dispatcher(app, clock, FakeSender())
    [item] = d.claim()
    clock.advance(seconds=3)

    assert d.mark_sent(item, "P-123") is True

    r = load(app, row)
    assert (r.status, r.sent_at, r.platform_message_id) == ("sent", clock.now(), "P-123")
    assert (r.claimed_by, r.claimed_until, r.attempts) == (None, None, 1)
    assert stored_ref(app, "#ops", "incident:1") == "P-123"
    assert d.mark_sent(item, "P-again") is False  # recorded once
    assert load(app, row).platform_message_id == "P-123"


def test_lease_is_taken_over_only_after_it_runs_out_and_the_old_holder_records_nothing(app, clock):
    row = queue(app, "#ops", "hello", ref_key="incident:1")
    first = dispatcher(app, clock, FakeSender())
    second = dispatcher(app, clock, FakeSender())
    [held] = first.claim()
    assert load(app, row).claimed_until == clock.now() + LEASE

    assert second.claim() == []
    clock.advance(seconds=60)
    assert second.claim() == []  # the lease ends only after claimed_until
    clock.advance(seconds=1)
    [taken] = second.claim()
    assert (taken.id, taken.attempts) == (row, 2)

    assert first.mark_sent(held, "P-old") is False
    first.mark_failed(held, SendError("late failure"))
    r = load(app, row)
    assert (r.status, r.claimed_by, r.platform_message_id) == ("sending", second.instance, None)
    assert stored_ref(app, "#ops", "incident:1") is None

    assert second.mark_sent(taken, "P-new") is True
    assert load(app, row).platform_message_id == "P-new"
    assert stored_ref(app, "#ops", "incident:1") == "P-new"


CHILD = """\
import asyncio, os, signal, sys
from datetime import datetime

from rounds.bot.dispatcher import Dispatcher
from rounds.clock import FakeClock
from rounds.db.engine import Database


class DiesMidSend:
    async def send(self, item):
        print("sending", item.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        return "never"


db = Database(sys.argv[1])
clock = FakeClock(datetime.fromisoformat(sys.argv[2]))
asyncio.run(Dispatcher(db, clock, {"fake": DiesMidSend()}).run_once())
print("survived", flush=True)
"""


@pytest.mark.slow
def test_message_survives_a_dispatcher_process_killed_mid_send(app, clock, tmp_path: Path):
    first = queue(app, "#ops", "INC-1 open")
    second = queue(app, "#ops", "INC-1 acknowledged")
    script = tmp_path / "dies_mid_send.py"
    script.write_text(CHILD, encoding="utf-8")

    child = subprocess.run(
        [sys.executable, str(script), app.config.database_url, clock.now().isoformat()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout.split() == ["sending", str(first)]
    r = load(app, first)
    assert (r.status, r.attempts) == ("sending", 1)
    assert r.claimed_until == clock.now() + LEASE
    assert load(app, second).status == "pending"

    sender = FakeSender()
    d = dispatcher(app, clock, sender)
    assert d.claim() == []
    clock.advance(seconds=59)
    assert drain(d) == 0
    assert sender.attempts == []

    clock.advance(seconds=2)
    drain(d)

    assert sender.delivered_ids() == [first, second]
    assert [i.id for i in sender.attempts] == [first, second]
    assert (load(app, first).status, load(app, first).attempts) == ("sent", 2)
    assert load(app, second).status == "sent"


# --- two dispatchers -------------------------------------------------------------------


def check_exactly_once_in_order(app, sent: list[tuple[int, str]], queued: dict[int, str]) -> None:
    ids = [row_id for row_id, _ in sent]
    assert len(ids) == len(set(ids)), "a row was sent twice"
    assert sorted(ids) == sorted(queued)
    by_address: dict[str, list[int]] = defaultdict(list)
    for row_id, address in sent:
        assert queued[row_id] == address
        by_address[address].append(row_id)
    for address, got in by_address.items():
        assert got == sorted(got), f"{address} out of order"
    rows = all_rows(app)
    assert {r.status for r in rows} == {"sent"}
    assert {r.attempts for r in rows} == {1}  # nobody claimed a row another one held


def test_two_dispatcher_threads_never_send_the_same_row_twice(app, clock):
    queued = queue_many(app, [f"#room-{n}" for n in range(10)], per_address=20)
    assert len(queued) == 200
    sent: list[tuple[int, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(2)
    databases = [Database(app.config.database_url) for _ in range(2)]

    def work(db: Database) -> int:
        d = Dispatcher(db, clock, {FAKE: FakeSender()}, batch=3)
        barrier.wait()
        done = 0
        for _ in range(200_000):
            items = d.claim()
            if not items:
                if pending_count(db)[0] == 0:
                    return done
                time.sleep(0.0005)
                continue
            for item in items:
                with lock:
                    sent.append((item.id, item.address))
                assert d.mark_sent(item, f"{d.instance}-{item.id}")
                done += 1
        raise AssertionError("the outbox never emptied")

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            counts = [f.result(timeout=120) for f in [pool.submit(work, db) for db in databases]]
    finally:
        for db in databases:
            db.dispose()

    assert sum(counts) == 200
    check_exactly_once_in_order(app, sent, queued)


def test_two_dispatchers_draining_together_send_each_row_once(app, clock):
    queued = queue_many(app, [f"@person-{n}" for n in range(10)], per_address=20)
    sent: list[tuple[int, str]] = []

    class Recorder:
        async def send(self, item: Outgoing) -> str:
            sent.append((item.id, item.address))
            await asyncio.sleep(0)  # let the other dispatcher run mid-send
            return f"m{item.id}"

    databases = [Database(app.config.database_url) for _ in range(2)]
    dispatchers = [Dispatcher(db, clock, {FAKE: Recorder()}, batch=4) for db in databases]

    async def both() -> None:
        for _ in range(1000):
            await asyncio.gather(*(d.drain() for d in dispatchers))
            if pending_count(app.db)[0] == 0:
                return
        raise AssertionError("the outbox never emptied")

    try:
        asyncio.run(both())
    finally:
        for db in databases:
            db.dispose()

    check_exactly_once_in_order(app, sent, queued)


# --- the domain's side -----------------------------------------------------------------


def test_rolled_back_transaction_leaves_nothing_in_the_outbox(app):
    with pytest.raises(RuntimeError, match="state change failed"), app.db.session() as s:
        assert outbox.notify(s, app.env, "channel:ops", Reply("x")) == 1
        raise RuntimeError("state change failed")

    assert all_rows(app) == []
    assert pending_count(app.db) == (0, None)

    with app.db.session() as s:
        outbox.notify(s, app.env, "channel:ops", Reply("y"))
    [row] = all_rows(app)
    assert (row.address, row.op, row.status) == ("#ops", "post", "pending")


def test_domain_notifications_reach_the_console_as_post_edit_and_thread_reply(app, clock):
    with app.db.session() as s:
        outbox.notify(s, app.env, outbox.channel("ops"), Reply("INC-1 open"), ref_key="incident:1")
        outbox.notify(s, app.env, outbox.person("eng.wang"), Reply("please look"))
    with app.db.session() as s:
        outbox.update(
            s, app.env, outbox.channel("ops"), Reply("INC-1 acknowledged"), ref_key="incident:1"
        )
        outbox.notify(
            s, app.env, outbox.channel("ops"), Reply("on my way"), thread_key="incident:1"
        )
    out = StringIO()

    drain(Dispatcher(app.db, clock, {"console": ConsoleSender(out)}))

    lines = out.getvalue().splitlines()
    assert sorted(lines) == sorted(
        [
            "[#ops] INC-1 open  <c1>",
            "[@eng.wang] please look  <c2>",
            "[#ops ✎ c1] INC-1 acknowledged  <c3>",
            "[#ops ↳ c1] on my way  <c4>",
        ]
    )
    ops = [line for line in lines if line.startswith("[#ops")]
    assert ops == [
        "[#ops] INC-1 open  <c1>",
        "[#ops ✎ c1] INC-1 acknowledged  <c3>",
        "[#ops ↳ c1] on my way  <c4>",
    ]


# --- the loop --------------------------------------------------------------------------


class DatabaseDownOnce(Dispatcher):
    """A dispatcher whose first claim fails as if the database were unreachable."""

    failed_rounds = 0

    def claim(self, platforms=None):
        if self.failed_rounds == 0:
            self.failed_rounds += 1
            raise OperationalError("SELECT ...", {}, Exception("unable to open database"))
        return super().claim(platforms)


def test_run_keeps_going_after_a_failed_round_and_stops_when_told(app, clock):
    flaky = queue(app, "#ops", "sender raises once")
    steady = queue(app, "#managers", "goes straight through")
    sender = FakeSender(plan={flaky: [RuntimeError("boom")]})
    d = DatabaseDownOnce(app.db, clock, {FAKE: sender}, poll_seconds=0.01)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(d.run(stop))
        # The failed send of `flaky` is recorded (back to pending), and `steady` was sent.
        while len(sender.attempts) < 2 or load(app, flaky).status != "pending":
            await asyncio.sleep(0.01)
        assert not task.done()
        clock.set(load(app, flaky).next_attempt_at)  # the retry is due
        while len(sender.delivered) < 2:
            await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))

    assert d.failed_rounds == 1
    assert sorted(sender.delivered_ids()) == [flaky, steady]
    assert [i.id for i in sender.attempts].count(flaky) == 2
    assert {r.status for r in all_rows(app)} == {"sent"}


def test_run_returns_promptly_when_stop_is_set_while_idle(app, clock):
    d = dispatcher(app, clock, FakeSender(), poll_seconds=3600)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(d.run(stop))
        await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))


def test_a_platform_down_for_days_keeps_being_retried_at_the_cap(app, clock):
    row = queue(app, "#ops", "down for days")
    with app.db.session() as s:  # as after about a week of five-minute retries
        s.get(OutboxMessage, row).attempts = 5000
    d = dispatcher(app, clock, FakeSender(always={row: SendError("503")}))

    run_once(d)

    stored = load(app, row)
    assert (stored.status, stored.attempts) == ("pending", 5001)
    assert 0 < seconds_between(stored.next_attempt_at, clock.now()) <= 300


class SlowThenCounting:
    """The first send takes longer than the lease (the clock moves past it meanwhile)."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.sent: list[int] = []

    async def send(self, item: Outgoing) -> str:
        if not self.sent:
            self.clock.advance(seconds=61)
        self.sent.append(item.id)
        return f"m{item.id}"


def test_a_message_whose_lease_ran_out_before_its_turn_is_left_for_the_next_claim(app, clock):
    first = queue(app, "#ops", "slow")
    second = queue(app, "#managers", "waits its turn")
    sender = SlowThenCounting(clock)
    d = dispatcher(app, clock, sender)

    async def one_round_in_order() -> None:
        for item in await asyncio.to_thread(d.claim):  # one after the other, as a slow
            await d._deliver(item)  # platform would make them

    asyncio.run(one_round_in_order())

    assert sender.sent == [first]
    assert load(app, second).status == "sending"  # still leased; nobody sent it late
    drain(d)
    assert sender.sent == [first, second]


def test_delivered_messages_are_pruned_after_the_kept_days_and_unsent_ones_never(app, clock):
    old_sent = queue(app, "#ops", "sent long ago")
    old_dead = queue(app, "#ops", "refused long ago")
    old_pending = queue(app, "#managers", "still waiting")
    with app.db.session() as s:
        s.get(OutboxMessage, old_sent).status = "sent"
        s.get(OutboxMessage, old_dead).status = "dead"
    clock.advance(days=8)
    recent = queue(app, "#ops", "sent today")
    with app.db.session() as s:
        s.get(OutboxMessage, recent).status = "sent"

    removed = jobs.prune_old_rows(app)

    assert removed[0] == 2
    assert sorted(r.id for r in all_rows(app)) == [old_pending, recent]


def test_the_claim_finds_unsent_messages_by_index_not_by_reading_the_history(app, clock):
    """Without statistics, SQLite must still reach the few unsent rows through an index."""
    if app.db.dialect != "sqlite":
        pytest.skip("the plan checked here is SQLite's; PostgreSQL plans with statistics")
    plans: list[str] = []

    @event.listens_for(app.db.engine, "before_cursor_execute")
    def explain(conn, cursor, statement, params, context, executemany):
        if "EXISTS" in statement and "FROM outbox" in statement:
            plans.extend(
                row[3]
                for row in cursor.connection.execute("EXPLAIN QUERY PLAN " + statement, params)
            )

    queue(app, "#ops", "one")
    dispatcher(app, clock, FakeSender()).claim()
    event.remove(app.db.engine, "before_cursor_execute", explain)

    assert plans and not any(p.startswith("SCAN outbox") for p in plans), plans
    assert any("ix_outbox_unsent" in p for p in plans), plans


class SlowSender:
    """A platform whose every send takes a while (a timeout, a rate limit)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.sent: list[int] = []

    async def send(self, item: Outgoing) -> str:
        await asyncio.sleep(self.seconds)
        self.sent.append(item.id)
        return f"s{item.id}"


def test_a_slow_platform_does_not_hold_up_another(app, clock):
    slow = SlowSender(1.5)
    fast = FakeSender()
    queue(app, "C1", "to the slow one", platform="slow")
    queue(app, "C2", "also slow", platform="slow")
    quick = queue(app, "#ops", "to the fast one", platform=FAKE)
    d = Dispatcher(app.db, clock, {"slow": slow, FAKE: fast}, poll_seconds=0.05)

    async def scenario() -> tuple[list[int], list[int]]:
        stop = asyncio.Event()
        task = asyncio.create_task(d.run(stop))
        while not fast.delivered:
            await asyncio.sleep(0.01)
        seen = (list(slow.sent), fast.delivered_ids())
        stop.set()
        await task
        return seen

    slow_sent, fast_sent = asyncio.run(asyncio.wait_for(scenario(), timeout=30))

    assert fast_sent == [quick]
    assert slow_sent == []  # the slow platform was still on its first message


def test_pruning_works_in_batches_and_takes_everything_old(app, clock):
    old = [queue(app, f"#c{n % 3}", f"old {n}") for n in range(25)]
    with app.db.session() as s:
        for row_id in old:
            s.get(OutboxMessage, row_id).status = "sent"
    clock.advance(days=8)

    removed = prune(app.db, clock.now() - timedelta(days=7), batch=10)

    assert removed == 25
    assert all_rows(app) == []
