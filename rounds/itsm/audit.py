"""The audit trail: who did what, to which record, when, from where, with what result."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from rounds.db.models import AuditEntry

OK = "ok"
DENIED = "denied"
REFUSED = "refused"


def record(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    record: str | None,
    via: str,
    result: str = OK,
    detail: str | None = None,
) -> AuditEntry:
    """Add one audit entry to the session; it commits with the change it describes."""
    entry = AuditEntry(
        at=at,
        actor=actor,
        action=action,
        record=record,
        transport=via,
        result=result,
        detail=detail,
    )
    session.add(entry)
    return entry


def list_entries(
    session: Session, since: datetime | None = None, limit: int | None = None
) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def history(session: Session, record_ref: str) -> list[AuditEntry]:
    """The successful actions on one record, oldest first: its timeline."""
    query = (
        select(AuditEntry)
        .where(AuditEntry.record == record_ref, AuditEntry.result == OK)
        .order_by(AuditEntry.id)
    )
    return list(session.scalars(query))


def details(detail: str | None) -> dict[str, str]:
    """The ``key=value`` pairs of a machine-readable detail such as ``step=1 target=x``."""
    pairs = (token.partition("=") for token in (detail or "").split())
    return {key: value for key, sep, value in pairs if sep}
