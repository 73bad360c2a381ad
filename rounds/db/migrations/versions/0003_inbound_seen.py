"""inbound deliveries seen

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 17:22:02.930970
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import rounds.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_seen",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("at", rounds.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_inbound_seen")),
    )
    with op.batch_alter_table("inbound_seen", schema=None) as batch_op:
        batch_op.create_index("ix_inbound_seen_at", ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("inbound_seen", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_seen_at")

    op.drop_table("inbound_seen")
