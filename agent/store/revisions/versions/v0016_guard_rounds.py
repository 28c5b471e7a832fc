"""The guard's tally per round of the task queue: how many bookings, moves and mails
the round's units made, for how many relationships (``agent.store.rounds``).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

#: text compared as bytes on PostgreSQL too, as in ``agent.store.schema`` when written
STR = sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql")

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guard_rounds",
        sa.Column("round", STR, nullable=False),
        sa.Column("actions", sa.Integer, nullable=False),
        sa.Column("relationships", sa.Integer, nullable=False),
        sa.Column("created_at", STR, nullable=False),
        sa.PrimaryKeyConstraint("round"),
    )


def downgrade() -> None:
    op.drop_table("guard_rounds")
