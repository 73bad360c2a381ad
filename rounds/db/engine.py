"""Engine and sessions. SQLite gets WAL, a busy timeout, foreign keys and IMMEDIATE writers."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_MS = 10_000


def make_engine(url: str, busy_ms: int = SQLITE_BUSY_MS, **kwargs: Any) -> Engine:
    """Create the engine for ``url``; for SQLite, create the folder of the database file.

    Bound parameters never appear in SQLAlchemy's error messages: they hold incident text,
    and an error message ends up in a log line.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False}, hide_parameters=True, **kwargs
        )
        _configure_sqlite(engine, busy_ms)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True, **kwargs)


def _configure_sqlite(engine: Engine, busy_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" below issue BEGIN, instead of pysqlite's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        _use_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A writer takes the write lock up front, so that it waits (busy_timeout) instead of
        # failing with SQLITE_BUSY when its read transaction would upgrade to a write.
        write = conn.get_execution_options().get("rounds_write", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _use_wal(cursor: Any) -> None:
    """Switch a database to WAL (it stays so); on a new file several processes may race.

    Changing the journal mode can answer SQLITE_BUSY without waiting on the busy handler,
    so the switch is retried for a while.
    """
    deadline = time.monotonic() + SQLITE_BUSY_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class Database:
    """The engine and two kinds of session: read-only and writing."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(
            self.engine.execution_options(rounds_write=False), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, write: bool = True) -> Iterator[Session]:
        """A session that commits when the block ends normally and rolls back otherwise."""
        session = (self._write if write else self._read)()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
