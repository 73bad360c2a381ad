"""Two processes (the bot and a command-line call beside it) share one outbox."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select

from rounds.db.models import OutboxMessage
from rounds.itsm import notify
from rounds.reply import Reply

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent

DRAIN = textwrap.dedent("""
    import asyncio, os, sys
    from rounds.clock import SystemClock
    from rounds.db.engine import Database
    from rounds.bot.dispatcher import Dispatcher

    url, log_path = sys.argv[1], sys.argv[2]

    class FileSender:
        async def send(self, item):
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"{os.getpid()} {item.address} {item.id}\\n")
            return f"m{item.id}"

    db = Database(url)
    dispatcher = Dispatcher(db, SystemClock(), {"console": FileSender()}, batch=5)
    asyncio.run(dispatcher.drain(max_rounds=100_000))
    db.dispose()
""")


def test_two_processes_draining_one_outbox_send_each_message_once_in_order(app, tmp_path):
    addresses = [f"#ward-{n}" for n in range(6)]
    with app.db.session() as s:
        for i in range(300):
            notify.notify(s, app.env, f"channel:ward-{i % 6}", Reply(f"message {i}"))
    script = tmp_path / "drain.py"
    script.write_text(DRAIN, encoding="utf-8")
    log = tmp_path / "sent.log"

    children = [
        subprocess.Popen([sys.executable, str(script), app.db.url, str(log)], cwd=ROOT)
        for _ in range(2)
    ]
    assert [child.wait(timeout=120) for child in children] == [0, 0]

    sent = [line.split() for line in log.read_text(encoding="utf-8").splitlines()]
    ids = [int(row_id) for _, _, row_id in sent]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 300
    by_address: dict[str, list[int]] = defaultdict(list)
    for _, address, row_id in sent:
        by_address[address].append(int(row_id))
    assert sorted(by_address) == addresses
    assert all(rows == sorted(rows) for rows in by_address.values())
    with app.db.session(write=False) as s:
        statuses = set(s.scalars(select(OutboxMessage.status)))
    assert statuses == {"sent"}
