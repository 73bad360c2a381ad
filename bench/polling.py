"""Command latency with the dispatcher running beside the bot, as it does in ``rounds run``.

Run it from the repository root, for one database and one history size::

    PYTHONPATH=. .venv/bin/python bench/polling.py --database sqlite --history 100000

``bench/commands.py`` drains the outbox between commands, so there a command never waits
for the dispatcher. In a running bot the dispatcher works in the same process at the same
time: it is woken after every command and polls every second. On SQLite its claim runs
in a ``BEGIN IMMEDIATE`` transaction, so a command that writes while a claim runs waits
for it. This script runs report, ack and resolve cycles (``bench/commands.py``'s, without
the reads) with people pausing a random 0 to 500 ms before each command, in blocks that
alternate between the dispatcher stopped (the outbox drained between cycles, untimed) and
the dispatcher running in a background thread, woken after each command as
``Bot.handle`` wakes it. It prints median, p99 and maximum per command for both, and
the ratio running / stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from bench.commands import (
    COMMANDS,
    DATABASES,
    LIMIT_MS,
    Servers,
    Variant,
    build,
    expect_ref,
    percentile,
)
from bench.history import REPORTS

MODES = ("stopped", "running")
BLOCK = 10
PAUSE = 0.5  # longest pause before a command, in seconds


class BackgroundDispatcher:
    """``Dispatcher.run`` on its own event loop in a thread, until :meth:`stop`."""

    def __init__(self, variant: Variant) -> None:
        self.dispatcher = variant.app.dispatcher
        self.loop = asyncio.new_event_loop()
        self.halt = asyncio.Event()
        self.thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)

    def _run(self) -> None:
        self.loop.run_until_complete(self.dispatcher.run(self.halt))

    def start(self) -> BackgroundDispatcher:
        self.thread.start()
        return self

    def wake(self) -> None:
        self.loop.call_soon_threadsafe(self.dispatcher.wake)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.halt.set)
        self.thread.join()
        self.loop.close()


def cycle(variant: Variant, samples: dict[str, list[float]], wake, rng: random.Random) -> None:
    """Report, ack, resolve, each after a pause and followed by a wake of the dispatcher."""
    report, fix = REPORTS[variant.done % len(REPORTS)]

    def say(step: str, person: str, line: str) -> str:
        time.sleep(rng.uniform(0, PAUSE))
        started = time.perf_counter()
        replies = variant.say(step, person, line, record=False)
        samples[step].append(time.perf_counter() - started)
        wake()
        return expect_ref(replies, None, step)

    ref = say("report", "nurse.li", f"report {report}")
    say("ack", "eng.wang", f"ack {ref}")
    say("resolve", "eng.wang", f"resolve {ref} {fix}")
    variant.done += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=DATABASES, default="sqlite")
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--cycles", type=int, default=100, help="measured cycles per mode")
    args = parser.parse_args(argv)

    rng = random.Random(7)
    loop = asyncio.new_event_loop()
    samples = {mode: {c: [] for c in COMMANDS} for mode in MODES}
    with ExitStack() as stack:
        stack.callback(loop.close)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rounds-poll-")))
        variant = build(args.database, args.history, Servers(workdir, stack), loop, stack)
        for _ in range(10):
            variant.cycle(record=False)
        for block_start in range(0, args.cycles, BLOCK):
            for mode in MODES:
                background = BackgroundDispatcher(variant).start() if mode == "running" else None
                wake = background.wake if background else (lambda: None)
                for _ in range(min(BLOCK, args.cycles - block_start)):
                    cycle(variant, samples[mode], wake, rng)
                    if background is None:
                        loop.run_until_complete(variant.app.dispatcher.drain())
                if background is not None:
                    background.stop()
                    loop.run_until_complete(variant.app.dispatcher.drain())

    print(f"\n{variant.name}: {args.cycles} cycles per mode, pause 0-{PAUSE * 1000:.0f} ms")
    print(
        f"{'dispatcher':<12}{'command':<9}{'median ms':>11}{'p99 ms':>9}{'max ms':>9}"
        f"{'p99/20ms':>10}"
    )
    p99 = {}
    for mode in MODES:
        for command, values in samples[mode].items():
            p99[mode, command] = percentile(values, 99) * 1000
            print(
                f"{mode:<12}{command:<9}{statistics.median(values) * 1000:>11.2f}"
                f"{p99[mode, command]:>9.2f}{max(values) * 1000:>9.2f}"
                f"{p99[mode, command] / LIMIT_MS:>10.2f}"
            )
    cells = "  ".join(f"{c} {p99['running', c] / p99['stopped', c]:.2f}" for c in COMMANDS)
    print(f"p99 running / stopped: {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
