"""The tables. Timestamps are aware UTC; people are stored by their configured name."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rounds.db.types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# Incident statuses (DESIGN.md): open -> acknowledged -> resolved -> closed.
OPEN = "open"
ACKNOWLEDGED = "acknowledged"
RESOLVED = "resolved"
CLOSED = "closed"


class Incident(Base):
    """A fault reported by a person or raised by monitoring (事件/故障)."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")
    priority: Mapped[str] = mapped_column(String(2))
    impact: Mapped[str] = mapped_column(String(2))
    urgency: Mapped[str] = mapped_column(String(2))
    major: Mapped[bool] = mapped_column(Boolean, default=False)
    system: Mapped[str | None] = mapped_column(String(64))
    location: Mapped[str | None] = mapped_column(String(200))
    reporter: Mapped[str] = mapped_column(String(64))
    assignee: Mapped[str | None] = mapped_column(String(64))
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    resolution: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Escalation state lives here so that a restart neither forgets nor repeats a step.
    escalation_step: Mapped[int] = mapped_column(Integer, default=0)
    escalate_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_incidents_status_id", "status", "id"),
        Index("ix_incidents_reporter_id", "reporter", "id"),
        Index("ix_incidents_assignee_id", "assignee", "id"),
        Index("ix_incidents_escalate_at", "escalate_at"),
    )

    @property
    def ref(self) -> str:
        return f"INC-{self.id}"


class IncidentPage(Base):
    """A person the bot paged about an incident, so that a bare ``ack`` finds it."""

    __tablename__ = "incident_pages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    person: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_incident_pages_person_id", "person", "id"),)


class AuditEntry(Base):
    """Who did what to which record, when, from where, and with what result."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    record: Mapped[str | None] = mapped_column(String(32))
    transport: Mapped[str] = mapped_column(String(16))
    result: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_audit_at", "at"),
        Index("ix_audit_record_id", "record", "id"),
    )


class OutboxMessage(Base):
    """One message for one platform and address, sent by the dispatcher after commit.

    ``op`` is ``post`` or ``edit``. A post with a ``ref_key`` stores the platform's message
    id under that key; an edit (or a post threaded under ``thread_key``) looks it up.
    Messages to one (platform, address) are sent in ``id`` order.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(128))
    op: Mapped[str] = mapped_column(String(8), default="post")
    ref_key: Mapped[str | None] = mapped_column(String(64))
    thread_key: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(40))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    platform_message_id: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (
        Index("ix_outbox_status_next", "status", "next_attempt_at"),
        # Status first: the dispatcher looks for the few unsent rows among every row ever
        # sent, and without statistics SQLite must be able to find them by this index.
        Index("ix_outbox_unsent", "status", "platform", "address", "id"),
    )


class MessageRef(Base):
    """The platform's id of a message the bot posted, by the key the domain gave it."""

    __tablename__ = "message_refs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(128))
    ref_key: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("platform", "address", "ref_key", name="uq_message_refs_key"),
    )


class Form(Base):
    """A guided form in progress (report with no text), one per person and chat."""

    __tablename__ = "forms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transport: Mapped[str] = mapped_column(String(16))
    chat: Mapped[str] = mapped_column(String(128))
    person: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    step: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("transport", "chat", "person", name="uq_forms_owner"),
        Index("ix_forms_expires_at", "expires_at"),
    )


class InboundSeen(Base):
    """Inbound deliveries already handled (a platform's retry, a double click)."""

    __tablename__ = "inbound_seen"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_inbound_seen_at", "at"),)


class Attachment(Base):
    """A file kept with an incident (a photo of the error screen or the device)."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(300))  # relative to [rounds] data_dir
    size: Mapped[int] = mapped_column(Integer)
    added_by: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_attachments_incident_id", "incident_id"),)
