"""Claims on bookings and mails: who is making the event or sending the mail, and until
when that claim holds (``agent.store.claims``).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from agent.store.revisions.kit import STR

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    for table in ("bookings", "outbox"):
        op.add_column(table, sa.Column("claimed_by", STR, nullable=True))
        op.add_column(table, sa.Column("claimed_until", STR, nullable=True))


def downgrade() -> None:
    for table in ("bookings", "outbox"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("claimed_until")
            batch.drop_column("claimed_by")
