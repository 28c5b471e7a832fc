"""The people an employee chose, one by one, to read their plan (beyond their leaders
and mentors, whom ``plans.shared`` covers); who chose each and when.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

from agent.store.revisions.kit import index, table

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    table("plan_readers", "employee! reader! added_at! added_by!", key=["employee", "reader"])
    index("plan_readers_reader", "plan_readers", "reader")


def downgrade() -> None:
    op.drop_index("plan_readers_reader", table_name="plan_readers")
    op.drop_table("plan_readers")
