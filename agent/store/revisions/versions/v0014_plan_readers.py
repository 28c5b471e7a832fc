"""The people an employee chose, one by one, to read their plan (beyond their leaders
and mentors, whom ``plans.shared`` covers); who chose each and when.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

#: text compared as bytes on PostgreSQL too, as in ``agent.store.schema`` when written
STR = sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql")

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plan_readers",
        sa.Column("employee", STR, nullable=False),
        sa.Column("reader", STR, nullable=False),
        sa.Column("added_at", STR, nullable=False),
        sa.Column("added_by", STR, nullable=False),
        sa.PrimaryKeyConstraint("employee", "reader"),
    )
    op.create_index("plan_readers_reader", "plan_readers", ["reader"])


def downgrade() -> None:
    op.drop_index("plan_readers_reader", table_name="plan_readers")
    op.drop_table("plan_readers")
