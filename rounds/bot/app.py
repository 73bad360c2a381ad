"""Startup and wiring: one process, one event loop, every edge attached to it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any, TextIO

from rounds.clock import Clock, SystemClock
from rounds.config import Config
from rounds.db import migrate
from rounds.db.engine import Database
from rounds.handlers import jobs
from rounds.itsm.context import Env, Routes

from .console import Console
from .core import Bot
from .dispatcher import Dispatcher
from .http import start_http
from .scheduler import build_scheduler
from .slack import SlackTransport
from .telegram import TelegramTransport

log = logging.getLogger(__name__)


def active_platforms(config: Config) -> tuple[str, ...]:
    """The chat platforms messages go to; the console when no chat platform is configured."""
    enabled = (("slack", config.slack.enabled), ("telegram", config.telegram.enabled))
    platforms = tuple(name for name, on in enabled if on)
    return platforms or ("console",)


class App:
    """The configured bot: database, domain environment, command handling, dispatcher."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.db = Database(config.database_url)
        self.env = Env(config, clock or SystemClock(), Routes(active_platforms(config)))
        self.dispatcher = Dispatcher(self.db, self.env.clock)
        self.bot = Bot(self.env, self.db, on_commit=self.dispatcher.wake)
        self.transports: dict[str, Any] = {}
        if config.slack.enabled:
            self.transports["slack"] = SlackTransport(self.bot, self.dispatcher, config.slack)
        if config.telegram.enabled:
            self.transports["telegram"] = TelegramTransport(self.bot, self.dispatcher, config)

    def wake_dispatcher(self) -> None:
        self.dispatcher.wake()

    def upgrade(self) -> bool:
        return migrate.upgrade(self.db.engine)

    def close(self) -> None:
        self.db.dispose()

    def console(self, person: str, out: TextIO) -> Console:
        return Console(self.bot, self.dispatcher, person, out)

    async def serve(
        self, console_in: TextIO | None, out: TextIO, stop: asyncio.Event | None = None
    ) -> None:
        """Serve HTTP, the scheduler, the dispatcher and any console until stopped."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)

        routes = []
        slack = self.transports.get("slack")
        if slack is not None and self.config.slack.mode == "http":
            routes.append(("POST", "/slack/events", slack.handle_http))
        telegram = self.transports.get("telegram")
        if telegram is not None and self.config.telegram.mode == "webhook":
            routes.append(("POST", "/telegram/webhook", telegram.handle_webhook))
        runner = await start_http(self, self.config.http.host, self.config.http.port, routes)
        jobs.bind(self)
        scheduler = build_scheduler(self.db, self.config)
        scheduler.start()
        # A chat platform that cannot be reached yet must not hold up the others, the
        # scheduler or the dispatcher: each starts (and keeps retrying) on its own.
        starting = [
            asyncio.create_task(t.start(), name=f"start-{name}")
            for name, t in self.transports.items()
        ]
        console = None
        if console_in is not None:
            first = self.config.people[0].name if self.config.people else "staff"
            console = self.console(first, out)
        tasks = [asyncio.create_task(self.dispatcher.run(stop), name="dispatcher")]
        if console is not None:

            async def _console() -> None:
                await console.run(console_in, interactive=console_in.isatty())
                stop.set()

            tasks.append(asyncio.create_task(_console(), name="console"))
        log.info("rounds running platforms=%s", ",".join(self.env.routes.platforms))
        try:
            await stop.wait()
        finally:
            for task in tasks + starting:
                if task.get_name() == "console" or task in starting:
                    task.cancel()
            await asyncio.gather(*tasks, *starting, return_exceptions=True)
            scheduler.shutdown(wait=False)
            jobs.bind(None)
            for transport in self.transports.values():
                await transport.stop()
            await runner.cleanup()
            log.info("rounds stopped")
