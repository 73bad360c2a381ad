"""The first outbox prune on a database with a year of sent messages, and what waits for it.

Run it from the repository root, for one database and one history size::

    PYTHONPATH=. .venv/bin/python bench/prune.py --database sqlite --history 100000

A database that ran Rounds before sent rows were pruned holds every message ever sent;
the first run of the ``prune-delivered-rows`` job deletes all but the last
``[outbox] keep_days`` of them with ``rounds.bot.dispatcher.prune``, in one transaction.
This builds such a database (``bench/history.py``), runs that prune in a thread, and
while it runs files reports through ``Bot.handle_sync`` one after another, timing each:
on SQLite a writer waits for the prune's write lock.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

from bench.commands import DATABASES, LIMIT_MS, Servers, build, expect_ref
from bench.history import REPORTS
from rounds.bot.dispatcher import prune


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=DATABASES, default="sqlite")
    parser.add_argument("--history", type=int, default=100_000)
    args = parser.parse_args(argv)

    loop = asyncio.new_event_loop()
    with ExitStack() as stack:
        stack.callback(loop.close)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rounds-prune-")))
        variant = build(args.database, args.history, Servers(workdir, stack), loop, stack)
        for _ in range(10):
            variant.cycle(record=False)
        app = variant.app
        keep = timedelta(days=app.config.outbox.keep_days)
        before = app.env.now() - keep

        outcome: dict[str, float] = {}

        def run_prune() -> None:
            started = time.perf_counter()
            outcome["deleted"] = prune(app.db, before)
            outcome["seconds"] = time.perf_counter() - started

        pruning = threading.Thread(target=run_prune, name="prune")
        waits = []
        pruning.start()
        time.sleep(0.05)  # let the prune take its lock first
        while pruning.is_alive():
            report, _ = REPORTS[len(waits) % len(REPORTS)]
            started = time.perf_counter()
            replies = variant.say("report", "nurse.li", f"report {report}", record=False)
            waits.append(time.perf_counter() - started)
            expect_ref(replies, None, "report")
        pruning.join()

    print(f"\n{variant.name}: keep_days {app.config.outbox.keep_days:g}")
    print(f"prune deleted {outcome['deleted']:,.0f} rows in {outcome['seconds'] * 1000:,.0f} ms")
    if waits:
        slowest = max(waits) * 1000
        print(
            f"reports filed meanwhile: {len(waits)}; slowest {slowest:,.0f} ms "
            f"({slowest / LIMIT_MS:.1f} x the 20 ms limit)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
