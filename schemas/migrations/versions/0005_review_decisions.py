"""督办 review decisions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("clock_id", sa.String(length=160), nullable=False),
        sa.Column("level", sa.String(length=20), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("until", sa.Date(), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_decisions_clock", "review_decisions", ["clock_id", "level", "due_date"])


def downgrade() -> None:
    op.drop_index("ix_review_decisions_clock", table_name="review_decisions")
    op.drop_table("review_decisions")
