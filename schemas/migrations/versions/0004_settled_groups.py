"""settled groups: what an incremental nightly run need not evaluate again

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "settled_groups",
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("digest", sa.BigInteger(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("kind", "group_id"),
    )
    op.create_table(
        "open_groups",
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("kind", "group_id"),
    )
    op.create_table(
        "settled_basis",
        sa.Column("name", sa.String(length=20), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("settled_basis")
    op.drop_table("open_groups")
    op.drop_table("settled_groups")
