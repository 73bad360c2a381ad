"""An aiohttp server on 127.0.0.1, on a free port, in a thread and event loop of its own.

The fake chat platforms build on it, so that synchronous tests and tests running their
own event loop can both talk to them.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Self

from aiohttp import web


class LoopbackServer:
    """Subclasses add their routes in :meth:`routes`; ``with Server() as s: s.url``."""

    label = "loopback"
    client_max_size = 1024 * 1024

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._port = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve,
            args=(sock, ready, failure),
            name=f"fake-{self.label}",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(10) or failure:
            self.stop()
            raise RuntimeError(f"fake {self.label} server did not start: {failure}")
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        if not self._port:
            raise RuntimeError(f"fake {self.label} server is not started")
        return f"http://127.0.0.1:{self._port}"

    # --- waiting for the code under test ---------------------------------------------

    # Subclasses record every request in ``self._calls`` under ``self._lock``.
    _calls: list
    _lock: Any

    @property
    def calls(self) -> list:
        """A snapshot of every call so far, failed ones included, in arrival order."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list:
        return [c for c in self.calls if c.method == method]

    def describe(self, call: Any) -> str:
        """One recorded call, for the message of a wait that timed out."""
        return f"  {call!r}"

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02
    ) -> Any:
        """Poll ``predicate()`` until it is truthy and return its value.

        This blocks the calling thread: from inside an event loop that also runs the code
        under test, use ``await wait_for_async(...)`` instead.
        """
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_message(predicate, timeout))
            time.sleep(interval)
        return value

    async def wait_for_async(
        self, predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02
    ) -> Any:
        """``wait_for`` for code already running in an event loop."""
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_message(predicate, timeout))
            await asyncio.sleep(interval)
        return value

    def _timeout_message(self, predicate: Callable[[], Any], timeout: float) -> str:
        recent = self.calls[-20:]
        name = getattr(predicate, "__name__", repr(predicate))
        lines = "\n".join(self.describe(c) for c in recent) or "  (none)"
        return f"{name} not true after {timeout}s; last {len(recent)} {self.label} calls:\n{lines}"

    def _serve(self, sock: socket.socket, ready: threading.Event, failure: list) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        app = web.Application(client_max_size=self.client_max_size)
        self.routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.SockSite(runner, sock).start())
        except BaseException as e:  # report to start(), which is waiting
            failure.append(e)
            loop.close()
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()
