"""incidents, audit and outbox

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-03 16:30:54.611116
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import rounds.db.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", rounds.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("record", sa.String(length=32), nullable=True),
        sa.Column("transport", sa.String(length=16), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit")),
    )
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.create_index("ix_audit_at", ["at"], unique=False)
        batch_op.create_index("ix_audit_record_id", ["record", "id"], unique=False)

    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=2), nullable=False),
        sa.Column("impact", sa.String(length=2), nullable=False),
        sa.Column("urgency", sa.String(length=2), nullable=False),
        sa.Column("major", sa.Boolean(), nullable=False),
        sa.Column("system", sa.String(length=64), nullable=True),
        sa.Column("location", sa.String(length=200), nullable=True),
        sa.Column("reporter", sa.String(length=64), nullable=False),
        sa.Column("assignee", sa.String(length=64), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", rounds.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", rounds.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", rounds.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", rounds.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("escalation_step", sa.Integer(), nullable=False),
        sa.Column("escalate_at", rounds.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index("ix_incidents_assignee_id", ["assignee", "id"], unique=False)
        batch_op.create_index("ix_incidents_escalate_at", ["escalate_at"], unique=False)
        batch_op.create_index("ix_incidents_reporter_id", ["reporter", "id"], unique=False)
        batch_op.create_index("ix_incidents_status_id", ["status", "id"], unique=False)

    op.create_table(
        "message_refs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        sa.Column("ref_key", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("at", rounds.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_refs")),
        sa.UniqueConstraint("platform", "address", "ref_key", name="uq_message_refs_key"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=False),
        sa.Column("op", sa.String(length=8), nullable=False),
        sa.Column("ref_key", sa.String(length=64), nullable=True),
        sa.Column("thread_key", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", rounds.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", rounds.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=40), nullable=True),
        sa.Column("claimed_until", rounds.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent_at", rounds.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("platform_message_id", sa.String(length=128), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_unsent", ["status", "platform", "address", "id"], unique=False
        )
        batch_op.create_index("ix_outbox_status_next", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "incident_pages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("person", sa.String(length=64), nullable=False),
        sa.Column("at", rounds.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_pages_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_pages")),
    )
    with op.batch_alter_table("incident_pages", schema=None) as batch_op:
        batch_op.create_index("ix_incident_pages_person_id", ["person", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("incident_pages", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_pages_person_id")

    op.drop_table("incident_pages")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_status_next")
        batch_op.drop_index("ix_outbox_unsent")

    op.drop_table("outbox")
    op.drop_table("message_refs")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index("ix_incidents_status_id")
        batch_op.drop_index("ix_incidents_reporter_id")
        batch_op.drop_index("ix_incidents_escalate_at")
        batch_op.drop_index("ix_incidents_assignee_id")

    op.drop_table("incidents")
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_record_id")
        batch_op.drop_index("ix_audit_at")

    op.drop_table("audit")
