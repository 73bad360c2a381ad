"""``rounds run`` inside the test process: the bot's event loop in a thread of its own."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import threading
import time
import urllib.request
from typing import Self

from sqlalchemy import select

from rounds.bot.app import App
from rounds.db.models import Incident


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ROUNDS_ variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUNDS_")}
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra)
    return env


def chat_people(platform: str, channels: dict[str, object], ids: dict[str, object]) -> str:
    """Configuration for a chat-platform test: its channels, the sample people with their
    ids on ``platform``, and eng.wang alone on the rota (so the duty engineer is known)."""

    def value(v: object) -> str:
        return f'"{v}"' if isinstance(v, str) else str(v)

    roles = {
        "nurse.li": ("李护士", "staff"),
        "eng.wang": ("王工", "engineer"),
        "eng.zhao": ("赵工", "engineer"),
        "mgr.chen": ("陈主任", "manager"),
    }
    lines = ["[channels]"]
    lines += [f'{name} = {{ {platform} = "{cid}" }}' for name, cid in channels.items()]
    for name, (display, role) in roles.items():
        lines += [
            "",
            "[[people]]",
            f'name = "{name}"',
            f'display = "{display}"',
            f'roles = ["{role}"]',
            f"{platform} = {value(ids[name])}",
        ]
    lines += ["", "[oncall]", 'rotation = ["eng.wang"]', ""]
    return "\n" + "\n".join(lines)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningBot:
    """Serves ``app`` (HTTP, scheduler, dispatcher, transports) until :meth:`stop`."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.port = app.config.http.port
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def serve() -> None:
            self.stop_event = asyncio.Event()
            await self.app.serve(None, io.StringIO(), self.stop_event)

        self.loop.run_until_complete(serve())

    def start(self) -> Self:
        """Start serving and wait (at most 20 s) until /healthz answers."""
        self.thread.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout=30)
        self.loop.close()

    def incidents(self) -> list[Incident]:
        with self.app.db.session(write=False) as s:
            return list(s.scalars(select(Incident).order_by(Incident.id)))
