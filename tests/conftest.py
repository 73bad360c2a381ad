"""Shared fixtures: a configured Rounds on a throwaway SQLite file, driven like a person."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from rounds.bot.app import App
from rounds.bot.console import Console
from rounds.clock import FakeClock
from rounds.config import Config, load_config
from rounds.db import migrate
from rounds.db.engine import Database
from tests.pgcluster import Cluster, bin_dir

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A Thursday morning in clinic hours. With the sample rota (start 2026-01-05, handover
# 08:00, eng.wang then eng.zhao) this is shift 332, so eng.wang is on duty until 08:00 on
# Friday, and eng.zhao after him.
MORNING = datetime(2026, 12, 3, 10, 0, tzinfo=SHANGHAI)


# `make test` and CI set this, so that a PostgreSQL run cannot silently be skipped.
REQUIRE_POSTGRES = os.environ.get("ROUNDS_REQUIRE_POSTGRES") == "1"
TEMPLATE = "rounds_template"
_databases = itertools.count(1)


def write_config(
    path: Path, text: str = "", data_dir: Path | None = None, database_url: str = ""
) -> Path:
    """A configuration file whose data folder is inside the test's temporary folder."""
    data_dir = data_dir or path.parent / "data"
    body = (
        f'[rounds]\ndata_dir = "{data_dir.as_posix()}"\nlanguage = "en"\n'
        f'database_url = "{database_url}"\n' + text
    )
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster with a migrated template database to clone."""
    if bin_dir() is None:
        message = "PostgreSQL server binaries are not installed (apt-get install postgresql)"
        if REQUIRE_POSTGRES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    cluster = Cluster().start()
    try:
        template = Database(cluster.create_database(TEMPLATE))
        migrate.upgrade(template.engine)
        template.dispose()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every database test runs on SQLite and on PostgreSQL, each on a fresh database."""
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'data' / 'rounds.db').as_posix()}"
        return
    cluster: Cluster = request.getfixturevalue("postgres")
    name = f"t{next(_databases)}"
    url = cluster.create_database(name, template=TEMPLATE)
    yield url
    cluster.drop_database(name)


@pytest.fixture
def config_file(tmp_path: Path, database_url: str) -> Path:
    return write_config(tmp_path / "rounds.toml", database_url=database_url)


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
