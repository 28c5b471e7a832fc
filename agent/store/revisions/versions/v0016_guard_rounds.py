"""The guard's tally per round of the task queue: how many bookings, moves and mails
the round's units made, for how many relationships (``agent.store.rounds``).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

from agent.store.revisions.kit import table

revision = "0016"
down_revision = "0015"


def upgrade() -> None:
    table("guard_rounds", "round! actions#! relationships#! created_at!", key=["round"])


def downgrade() -> None:
    op.drop_table("guard_rounds")
