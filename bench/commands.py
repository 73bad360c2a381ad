"""Benchmark of command handling: report, acknowledge, resolve, on SQLite and PostgreSQL.

Run it from the repository root (it is not part of ``.ci/run``)::

    PYTHONPATH=. .venv/bin/python bench/commands.py --json bench/results.json
    PYTHONPATH=. .venv/bin/python bench/commands.py --quick    # smoke run, about a minute

For each database (a SQLite file; PostgreSQL on a throwaway cluster from
``tests/pgcluster.py``) and each history size (10,000 and 100,000 earlier incidents;
1,000 and 10,000 with ``--quick``) it creates and migrates a fresh database, inserts a year
of history (``bench/history.py``) and runs cycles through ``Bot.handle_sync``, the call
every transport makes for a chat message (cleaning, masking, parsing, one transaction):

    report <text>         as nurse.li (staff)
    ack INC-n             as eng.wang (the duty engineer)
    resolve INC-n <fix>   as eng.wang
    delivery              the dispatcher drains the outbox to a no-op console sender
    incidents             as eng.wang (the open list)
    incident INC-n        as eng.wang (card and timeline)

Every step is timed with ``time.perf_counter``. All variants are set up and warmed up
first, then measured side by side: blocks of ten cycles, variant after variant, so that a
drift of the machine touches each alike. The report gives median, p99 (nearest rank) and
maximum per step, cycles per second (one cycle = report + ack + resolve), and the ratios
the issue asks for: p99 against the 20 ms limit, p99 with 100,000 incidents of history
against p99 with 10,000 (about 1.0 when cost does not grow with history), and PostgreSQL
against SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy
from sqlalchemy import func, select, text

from bench.history import REPORTS, History
from rounds.bot.app import App
from rounds.bot.core import Inbound
from rounds.bot.dispatcher import Outgoing, pending_count
from rounds.config import load_config
from rounds.db.models import Incident
from rounds.reply import Reply
from tests.pgcluster import Cluster

LIMIT_MS = 20.0
COMMANDS = ("report", "ack", "resolve")
STEPS = (*COMMANDS, "delivery", "incidents", "incident")
DATABASES = ("sqlite", "postgresql")
FULL = {"sizes": (10_000, 100_000), "cycles": 300, "warmup": 30}
QUICK = {"sizes": (1_000, 10_000), "cycles": 60, "warmup": 10}
BLOCK = 10  # cycles a variant runs before the next one takes its turn
TRANSPORT = "console"
_REF = re.compile(r"INC-(\d+)")


class NullSender:
    """The console platform's sender, minus the printing: accepts every message."""

    async def send(self, item: Outgoing) -> str:
        return f"n{item.id}"


@dataclass
class Variant:
    """One database with one history size, its bot, and what was measured on it."""

    database: str
    history: int
    app: App
    loop: asyncio.AbstractEventLoop
    rows: dict[str, int]
    seed_seconds: float
    samples: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    delivered: list[int] = field(default_factory=list)
    done: int = 0
    step: str = ""  # the step under way, for whoever watches the statements

    @property
    def name(self) -> str:
        return f"{self.database} {size_label(self.history)}"

    def say(self, step: str, person: str, line: str, record: bool) -> list[Reply]:
        inbound = Inbound(TRANSPORT, self.app.env.people.resolve(person), line, chat=TRANSPORT)
        self.step = step
        started = time.perf_counter()
        replies = self.app.bot.handle_sync(inbound)
        elapsed = time.perf_counter() - started
        if record:
            self.samples[step].append(elapsed)
        return replies

    def cycle(self, record: bool) -> None:
        report, fix = REPORTS[self.done % len(REPORTS)]
        replies = self.say("report", "nurse.li", f"report {report}", record)
        ref = expect_ref(replies, None, "report")
        expect_ref(self.say("ack", "eng.wang", f"ack {ref}", record), ref, "ack")
        expect_ref(self.say("resolve", "eng.wang", f"resolve {ref} {fix}", record), ref, "resolve")

        self.step = "delivery"
        started = time.perf_counter()
        sent = self.loop.run_until_complete(self.app.dispatcher.drain())
        if record:
            self.samples["delivery"].append(time.perf_counter() - started)
            self.delivered.append(sent)

        self.say("incidents", "eng.wang", "incidents", record)
        expect_ref(self.say("incident", "eng.wang", f"incident {ref}", record), ref, "incident")
        self.done += 1

    def check(self) -> None:
        """Every incident the benchmark filed is resolved, and every message was sent."""
        with self.app.db.session(write=False) as session:
            left = session.scalar(
                select(func.count())
                .select_from(Incident)
                .where(Incident.id > self.history, Incident.status.in_(("open", "acknowledged")))
            )
        unsent, _ = pending_count(self.app.db)
        if left or unsent:
            raise RuntimeError(f"{self.name}: {left} incidents still active, {unsent} unsent")


def expect_ref(replies: list[Reply], ref: str | None, step: str) -> str:
    """The incident the replies name; fail loudly when a command did not do its work."""
    said = "\n".join(r.text for r in replies)
    found = _REF.search(said)
    if found is None or (ref is not None and found.group(0) != ref):
        raise RuntimeError(f"{step}: unexpected reply {said!r}")
    return found.group(0)


def size_label(count: int) -> str:
    return f"{count // 1000}k" if count % 1000 == 0 else str(count)


# --- setting up ----------------------------------------------------------------------


class Servers:
    """Where fresh databases come from: files in the work folder, one local cluster."""

    def __init__(self, workdir: Path, stack: ExitStack) -> None:
        self.workdir = workdir
        self.stack = stack
        self.cluster: Cluster | None = None

    def url(self, database: str, history: int) -> str:
        if database == "sqlite":
            return f"sqlite:///{(self.workdir / f'rounds-{history}.db').as_posix()}"
        if self.cluster is None:
            self.cluster = Cluster().start()
            self.stack.callback(self.cluster.stop)
        return self.cluster.create_database(f"bench_{history}")


def build(
    database: str,
    history: int,
    servers: Servers,
    loop: asyncio.AbstractEventLoop,
    stack: ExitStack,
) -> Variant:
    """A fresh, migrated database with ``history`` incidents, and a bot configured on it."""
    url = servers.url(database, history)
    workdir = servers.workdir
    config_file = workdir / f"{database}-{history}.toml"
    config_file.write_text(
        f'[rounds]\ndatabase_url = "{url}"\ndata_dir = "{workdir.as_posix()}"\nlanguage = "zh"\n',
        encoding="utf-8",
    )
    app = App(load_config(config_file, environ={}))
    stack.callback(app.close)
    app.upgrade()
    started = time.perf_counter()
    rows = History(app.env, app.env.now()).write(app.db.engine, history)
    seed_seconds = time.perf_counter() - started
    app.dispatcher.senders["console"] = NullSender()
    return Variant(database, history, app, loop, rows, seed_seconds)


# --- figures -------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with ``pct`` % of them at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def summarize(variant: Variant) -> dict[str, Any]:
    steps = {}
    for step, values in variant.samples.items():
        steps[step] = {
            "n": len(values),
            "median_ms": statistics.median(values) * 1000,
            "p99_ms": percentile(values, 99) * 1000,
            "max_ms": max(values) * 1000,
            "mean_ms": statistics.fmean(values) * 1000,
        }
    commands = sum(sum(variant.samples[c]) for c in COMMANDS)
    cycles = len(variant.samples["report"])
    return {
        "database": variant.database,
        "history": variant.history,
        "rows": variant.rows,
        "seed_seconds": round(variant.seed_seconds, 1),
        "steps": steps,
        "messages_per_cycle": statistics.fmean(variant.delivered),
        "cycles_per_second": cycles / commands,
        "cycles_per_second_with_delivery": cycles / (commands + sum(variant.samples["delivery"])),
    }


def ratios(results: list[dict[str, Any]], sizes: tuple[int, int]) -> dict[str, Any]:
    by = {(r["database"], r["history"]): r["steps"] for r in results}
    small, big = sizes
    databases = [d for d in DATABASES if (d, small) in by]
    out: dict[str, Any] = {"p99_over_limit": {}, "growth": {}, "postgresql_over_sqlite": {}}
    for db in databases:
        for size in sizes:
            out["p99_over_limit"][f"{db} {size_label(size)}"] = {
                s: by[(db, size)][s]["p99_ms"] / LIMIT_MS for s in STEPS
            }
        out["growth"][db] = {
            s: {
                "p99": by[(db, big)][s]["p99_ms"] / by[(db, small)][s]["p99_ms"],
                "median": by[(db, big)][s]["median_ms"] / by[(db, small)][s]["median_ms"],
            }
            for s in STEPS
        }
    if len(databases) == 2:
        for size in sizes:
            pg, lite = by[("postgresql", size)], by[("sqlite", size)]
            out["postgresql_over_sqlite"][size_label(size)] = {
                s: {
                    "p99": pg[s]["p99_ms"] / lite[s]["p99_ms"],
                    "median": pg[s]["median_ms"] / lite[s]["median_ms"],
                }
                for s in STEPS
            }
    return out


def machine(variants: list[Variant]) -> dict[str, Any]:
    cpu = "unknown"
    memory = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 2**20:.1f} GiB"
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "system": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "psycopg": psycopg.__version__,
    }
    for variant in variants:
        if variant.database == "postgresql":
            with variant.app.db.engine.connect() as conn:
                info["postgresql"] = conn.scalar(text("SHOW server_version"))
            break
    return info


def source() -> dict[str, Any]:
    """The commit measured, and whether rounds/ differed from it (read-only git calls)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", "rounds").splitlines()
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_in_rounds": changed}


def print_report(results: list[dict[str, Any]], ratio: dict[str, Any]) -> None:
    print(
        f"\n{'variant':<16}{'step':<11}{'n':>5}{'median ms':>11}{'p99 ms':>9}"
        f"{'max ms':>9}{'p99/20ms':>10}"
    )
    for result in results:
        name = f"{result['database']} {size_label(result['history'])}"
        for step, s in result["steps"].items():
            print(
                f"{name:<16}{step:<11}{s['n']:>5}{s['median_ms']:>11.2f}{s['p99_ms']:>9.2f}"
                f"{s['max_ms']:>9.2f}{s['p99_ms'] / LIMIT_MS:>10.2f}"
            )
        print(
            f"{name:<16}cycles/s {result['cycles_per_second']:.1f} (commands), "
            f"{result['cycles_per_second_with_delivery']:.1f} (with delivery); "
            f"{result['messages_per_cycle']:.1f} messages delivered per cycle\n"
        )

    small, big = (size_label(r["history"]) for r in results[:2])
    print(f"Growth with history ({big} / {small}): p99 ratio/median ratio")
    for db, steps in ratio["growth"].items():
        cells = "  ".join(f"{s} {v['p99']:.2f}/{v['median']:.2f}" for s, v in steps.items())
        print(f"  {db:<11}{cells}")
    if ratio["postgresql_over_sqlite"]:
        print("PostgreSQL / SQLite: p99 ratio/median ratio")
        for size, steps in ratio["postgresql_over_sqlite"].items():
            cells = "  ".join(f"{s} {v['p99']:.2f}/{v['median']:.2f}" for s, v in steps.items())
            print(f"  {size:<11}{cells}")


# --- the run -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k history, 60 cycles")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--cycles", type=int, help="measured cycles per variant")
    parser.add_argument(
        "--databases", default=",".join(DATABASES), help="comma-separated: sqlite,postgresql"
    )
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    if args.cycles:
        plan["cycles"] = args.cycles
    databases = [d for d in args.databases.split(",") if d]
    if unknown := set(databases) - set(DATABASES):
        parser.error(f"unknown database(s): {', '.join(sorted(unknown))}")

    measured = source()  # now, while the code imported is the code on disk
    loop = asyncio.new_event_loop()
    with ExitStack() as stack:
        stack.callback(loop.close)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rounds-bench-")))
        servers = Servers(workdir, stack)
        variants: list[Variant] = []
        for database in databases:
            for history in plan["sizes"]:
                log(f"setting up {database} with {history:,} incidents of history")
                variant = build(database, history, servers, loop, stack)
                log(f"  {variant.seed_seconds:.0f} s: {variant.rows}")
                for _ in range(plan["warmup"]):
                    variant.cycle(record=False)
                variants.append(variant)

        log(f"measuring {plan['cycles']} cycles per variant, {BLOCK} at a time in turn")
        load = {"before": os.getloadavg()}
        started = time.perf_counter()
        for block_start in range(0, plan["cycles"], BLOCK):
            for variant in variants:
                for _ in range(min(BLOCK, plan["cycles"] - block_start)):
                    variant.cycle(record=True)
            log(f"  {block_start + BLOCK} cycles, {time.perf_counter() - started:.0f} s")
        load["after"] = os.getloadavg()
        for variant in variants:
            variant.check()

        results = [summarize(v) for v in variants]
        ratio = ratios(results, plan["sizes"])
        print_report(results, ratio)
        if args.json:
            document = {
                "benchmark": "bench/commands.py",
                "argv": sys.argv[1:],
                "limit_ms": LIMIT_MS,
                "plan": {**plan, "block": BLOCK},
                "machine": machine(variants),
                "source": measured,
                # 1, 5 and 15 minute load averages: this process alone accounts for about 1.
                "load_average": load,
                "results": results,
                "ratios": ratio,
            }
            args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            log(f"wrote {args.json}")
    return 0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
