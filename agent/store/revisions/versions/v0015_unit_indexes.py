"""Indexes for a worker's unit, which reads its own relationships' bookings and mails
(not every unit's): bookings and outbox rows by relationship.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    op.create_index("bookings_relationship", "bookings", ["relationship"])
    op.create_index("outbox_relationship", "outbox", ["relationship"])


def downgrade() -> None:
    op.drop_index("outbox_relationship", table_name="outbox")
    op.drop_index("bookings_relationship", table_name="bookings")
