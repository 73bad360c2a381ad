"""Shared fixtures: a configured Rounds on a throwaway SQLite file, driven like a person."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from rounds.bot.app import App
from rounds.bot.console import Console
from rounds.clock import FakeClock
from rounds.config import Config, load_config

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A Thursday morning in clinic hours. With the sample rota (start 2026-01-05, handover
# 08:00, eng.wang then eng.zhao) this is shift 332, so eng.wang is on duty until 08:00 on
# Friday, and eng.zhao after him.
MORNING = datetime(2026, 12, 3, 10, 0, tzinfo=SHANGHAI)


def write_config(path: Path, text: str = "", data_dir: Path | None = None) -> Path:
    """A configuration file whose data folder is inside the test's temporary folder."""
    data_dir = data_dir or path.parent / "data"
    body = f'[rounds]\ndata_dir = "{data_dir.as_posix()}"\nlanguage = "en"\n' + text
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path / "rounds.toml")


@pytest.fixture
def config(config_file: Path) -> Config:
    return load_config(config_file, environ={})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(MORNING)


class Harness:
    """A console on a real database: ``say`` types as a person and returns what showed."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.out = io.StringIO()
        self.console = Console(app.bot, app.dispatcher, "nurse.li", self.out)
        self.loop = asyncio.new_event_loop()

    def say(self, person: str, text: str) -> str:
        """Type ``text`` as ``person``; return the replies and everything delivered after."""
        self.console.person = self.app.env.people.resolve(person)
        start = self.out.tell()
        self.loop.run_until_complete(self.console.handle_line(text))
        self.out.seek(start)
        shown = self.out.read()
        self.out.seek(0, io.SEEK_END)
        return shown

    def close(self) -> None:
        self.loop.close()


@pytest.fixture
def app(config: Config, clock: FakeClock) -> Iterator[App]:
    app = App(config, clock=clock)
    app.upgrade()
    yield app
    app.close()


@pytest.fixture
def harness(app: App) -> Iterator[Harness]:
    h = Harness(app)
    yield h
    h.close()
