"""Alembic environment. Rounds passes its own connection; no logging is configured here."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from rounds.db.models import Base


def include_object(obj, name, type_, reflected, compare_to):
    """Keep APScheduler's job table out of autogenerate."""
    return not (type_ == "table" and name is not None and name.startswith("apscheduler"))


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///data/rounds.db"
        engine = create_engine(url)
        with engine.begin() as conn:
            _migrate(conn)
        return
    _migrate(connection)


def _migrate(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        include_object=include_object,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
