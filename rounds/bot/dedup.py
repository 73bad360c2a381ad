"""Has this inbound delivery been handled already? One atomic upsert decides.

Chat platforms deliver at least once: Slack retries an event it thinks timed out (same
``event_id``), and a nurse double-taps a button. The key names the delivery; a key seen
within ``window`` is a repeat. ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` with
``RETURNING`` answers in one statement on SQLite and PostgreSQL alike, so two processes
receiving the same delivery cannot both handle it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from rounds.db.engine import Database
from rounds.db.models import InboundSeen


def first_time(db: Database, key: str, now: datetime, window: timedelta) -> bool:
    """Record ``key`` as seen now; True unless it was already seen within ``window``."""
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    statement = insert(InboundSeen).values(key=key[:200], at=now)
    statement = statement.on_conflict_do_update(
        index_elements=[InboundSeen.key],
        set_={"at": now},
        where=InboundSeen.at < now - window,
    ).returning(InboundSeen.key)
    with db.session() as session:
        return session.execute(statement).first() is not None


def forget(db: Database, key: str) -> None:
    """Forget one key: the delivery was not handled after all, so let it come again."""
    with db.session() as session:
        session.execute(delete(InboundSeen).where(InboundSeen.key == key[:200]))


def forget_before(db: Database, moment: datetime) -> int:
    """Drop keys last seen before ``moment``; return how many."""
    with db.session() as session:
        return session.execute(delete(InboundSeen).where(InboundSeen.at < moment)).rowcount or 0
