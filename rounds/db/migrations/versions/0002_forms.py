"""guided forms

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 16:44:26.700720
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import rounds.db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(length=16), nullable=False),
        sa.Column("chat", sa.String(length=128), nullable=False),
        sa.Column("person", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("started_at", rounds.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", rounds.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forms")),
        sa.UniqueConstraint("transport", "chat", "person", name="uq_forms_owner"),
    )
    with op.batch_alter_table("forms", schema=None) as batch_op:
        batch_op.create_index("ix_forms_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("forms", schema=None) as batch_op:
        batch_op.drop_index("ix_forms_expires_at")

    op.drop_table("forms")
