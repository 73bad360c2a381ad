"""What each step of a benchmark cycle asks the database, and the plan of every query.

Run it from the repository root, for one database and one history size::

    PYTHONPATH=. .venv/bin/python bench/explain.py --database sqlite --history 100000
    PYTHONPATH=. .venv/bin/python bench/explain.py --database postgresql --history 100000

It builds the database as ``bench/commands.py`` does (fresh, migrated, a year of
history), runs warm-up cycles, then records every statement one more cycle sends, step by
step. For each step it prints how many statements and transactions it took; for each
distinct SELECT and UPDATE, how long it takes on its own (median of repeated runs in a
transaction that is rolled back) and its plan: ``EXPLAIN QUERY PLAN`` on SQLite,
``EXPLAIN (ANALYZE, BUFFERS)`` on PostgreSQL.

It ends with the time an idle ``Dispatcher.claim()`` takes, and the claim's candidate query
as ``Dispatcher.claim`` builds it beside the rewrite suggested in BENCHMARKS.md, with the
partial index it needs, created on this throwaway database only (see ``claim_query``).
``--analyze`` first gives SQLite the statistics Rounds never collects, to show how the
plans change with them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, and_, event, exists, select, text
from sqlalchemy.orm import aliased

from bench.commands import DATABASES, STEPS, Servers, Variant, build
from rounds.bot.dispatcher import UNSENT
from rounds.db.models import OutboxMessage

REPEAT = 20
UNSENT_SQL = "outbox.status IN ('pending', 'sending')"
# Each rewrite of the claim query, with the index it is meant for.
REWRITES = {"partial": "outbox (id) WHERE status IN ('pending', 'sending')"}


def record_cycle(variant: Variant) -> dict[str, list[tuple[str, Any]]]:
    """The statements (text, parameters) one cycle sends, by step, in order."""
    by_step: dict[str, list[tuple[str, Any]]] = defaultdict(list)

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        by_step[variant.step].append((statement, parameters))

    def begin(conn) -> None:
        by_step[variant.step].append(("-- begin", None))

    engine = variant.app.db.engine
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "begin", begin)
    try:
        variant.cycle(record=False)
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "begin", begin)
    return by_step


def plan(conn: Connection, statement: str, parameters: Any) -> list[str]:
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        depth = {0: -1}
        lines = []
        for node, parent, _, detail in rows:
            depth[node] = depth.get(parent, -1) + 1
            lines.append("  " * depth[node] + detail)
        return lines
    explain = "EXPLAIN (ANALYZE, BUFFERS) " + statement
    return [row[0] for row in conn.exec_driver_sql(explain, parameters)]


def timed(conn: Connection, run) -> float:
    """Median milliseconds of ``run(conn)`` over REPEAT runs."""
    return timed_calls(lambda: run(conn))


def timed_calls(call) -> float:
    """Median milliseconds of ``call()`` over REPEAT calls."""
    samples = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def in_rollback(engine: Engine, work):
    """Run ``work(conn)`` in a transaction that is rolled back, whatever it changed."""
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            return work(conn)
        finally:
            transaction.rollback()


def short(statement: str, width: int = 150) -> str:
    flat = " ".join(statement.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def explain_steps(variant: Variant, by_step: dict[str, list[tuple[str, Any]]]) -> None:
    engine = variant.app.db.engine
    for step in STEPS:
        sent = by_step.get(step, [])
        begins = sum(1 for s, _ in sent if s == "-- begin")
        # Leave out the markers and SQLite's own BEGIN, which the engine sends on "begin".
        statements = [(s, p) for s, p in sent if not s.upper().startswith(("-- BEGIN", "BEGIN"))]
        print(f"\n=== {step}: {len(statements)} statements, {begins} transactions")
        seen: set[str] = set()
        for statement, parameters in statements:
            kind = statement.lstrip().split(None, 1)[0].upper()
            count = sum(1 for s, _ in statements if s == statement)
            if kind not in ("SELECT", "UPDATE") or statement in seen:
                continue
            seen.add(statement)

            def run(conn: Connection, statement=statement, parameters=parameters) -> None:
                result = conn.exec_driver_sql(statement, parameters)
                if result.returns_rows:
                    result.fetchall()

            ms = in_rollback(engine, lambda conn, run=run: timed(conn, run))
            lines = in_rollback(engine, lambda conn, s=statement, p=parameters: plan(conn, s, p))
            print(f"  {ms:8.3f} ms  x{count}  {short(statement)}")
            for line in lines:
                print(f"              {line}")


def claim_query(now, platforms: list[str], batch: int, rewrite: str = ""):
    """The candidate query of ``Dispatcher.claim``, line by line, or the ``partial`` rewrite.

    ``partial`` writes the status term as literal SQL, which lets a partial index of the
    unsent rows serve it, and hides ``platform`` from the planner (``platform || ''``) so
    that SQLite cannot prefer an index on it.
    """
    earlier = aliased(OutboxMessage)
    blocked = exists().where(
        earlier.platform == OutboxMessage.platform,
        earlier.address == OutboxMessage.address,
        earlier.status.in_(UNSENT),
        earlier.id < OutboxMessage.id,
    )
    due = and_(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now) | and_(
        OutboxMessage.status == "sending", OutboxMessage.claimed_until < now
    )
    terms = [OutboxMessage.status.in_(UNSENT), OutboxMessage.platform.in_(platforms), due]
    if rewrite == "partial":
        terms[:2] = [text(UNSENT_SQL), (OutboxMessage.platform + "").in_(platforms)]
    return (
        select(OutboxMessage.id)
        .where(*terms, ~blocked)
        .order_by(OutboxMessage.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )


def analyze(engine: Engine) -> None:
    """Collect statistics, and start new connections: SQLite loads them per connection."""
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()


def compare_claim(variant: Variant, with_statistics: bool) -> None:
    """The idle claim, then each rewrite beside the query as written, with its index."""
    engine = variant.app.db.engine
    dispatcher = variant.app.dispatcher
    idle = timed_calls(dispatcher.claim)
    print(f"\n=== Dispatcher.claim() with nothing due (an idle poll): {idle:.3f} ms")
    if engine.dialect.name == "sqlite":
        print("    (in a BEGIN IMMEDIATE transaction: the write lock is held all that time)")

    now = variant.app.env.now()
    for rewrite, index in REWRITES.items():
        print(f"\n=== claim query as written and rewritten ({rewrite}), with {index}")
        name = f"bench_ix_outbox_{rewrite.replace('-', '_')}"
        with engine.begin() as conn:
            conn.execute(text(f"CREATE INDEX {name} ON {index}"))
        if with_statistics:
            analyze(engine)
        for variant_of in ("", rewrite):
            query = claim_query(now, list(dispatcher.senders), dispatcher.batch, variant_of)
            statement, parameters = in_rollback(engine, lambda c, q=query: driver_sql(c, q))
            ms = in_rollback(engine, lambda c, q=query: timed(c, lambda c2: c2.execute(q).all()))
            lines = in_rollback(engine, lambda c, s=statement, p=parameters: plan(c, s, p))
            print(f"  {ms:8.3f} ms  {variant_of or 'as written'}")
            for line in lines:
                print(f"              {line}")
        with engine.begin() as conn:
            conn.execute(text(f"DROP INDEX {name}"))
        engine.dispose()  # no connection keeps a view of the schema with the index


def driver_sql(conn: Connection, query) -> tuple[str, Any]:
    """The statement and parameters ``query`` reaches the driver as."""
    sent: list[tuple[str, Any]] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", before)
    try:
        conn.execute(query).all()
    finally:
        event.remove(conn, "before_cursor_execute", before)
    return sent[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=DATABASES, default="sqlite")
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="run ANALYZE on SQLite first (Rounds never does; PostgreSQL always has statistics)",
    )
    args = parser.parse_args(argv)

    loop = asyncio.new_event_loop()
    with ExitStack() as stack:
        stack.callback(loop.close)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rounds-explain-")))
        variant = build(args.database, args.history, Servers(workdir, stack), loop, stack)
        print(f"{variant.name}: {variant.rows}")
        for _ in range(args.warmup):
            variant.cycle(record=False)
        if args.analyze and args.database == "sqlite":
            analyze(variant.app.db.engine)
        explain_steps(variant, record_cycle(variant))
        compare_claim(variant, with_statistics=args.analyze or args.database == "postgresql")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
