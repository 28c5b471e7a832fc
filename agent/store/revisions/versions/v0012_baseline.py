"""The schema of legacy version 12: every table and index, and the store's secret.

A new store starts here on every backend; an SQLite store made by the legacy steps
(``agent.store.migrations``) is brought to their version 12 and stamped with this one.

Revision ID: 0012
Revises: (none)
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

#: text compared as bytes on PostgreSQL too, as in ``agent.store.schema`` when written
STR = sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql")

revision = "0012"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("employee", STR, nullable=False),
        sa.Column("norm", STR, nullable=False),
        sa.Column("title", STR, nullable=False),
        sa.Column("goal", STR, nullable=True),
        sa.Column("due", STR, nullable=True),
        sa.Column("status", STR, nullable=False),
        sa.Column("relationship", STR, nullable=True),
        sa.Column("meeting", STR, nullable=True),
        sa.Column("source", STR, nullable=True),
        sa.Column("created_at", STR, nullable=True),
        sa.Column("updated_at", STR, nullable=True),
        sa.Column("done_at", STR, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("employee", "norm"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tick", sa.Integer(), nullable=True),
        sa.Column("at", STR, nullable=False),
        sa.Column("relationship", STR, nullable=True),
        sa.Column("series", STR, nullable=True),
        sa.Column("kind", STR, nullable=False),
        sa.Column("message", STR, nullable=False),
        sa.Column("data", STR, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.create_index("audit_relationship", ["relationship", "at"], unique=False)
        batch_op.create_index(
            "audit_relationship_kind", ["relationship", "kind", "id"], unique=False
        )
        batch_op.create_index("audit_tick", ["tick"], unique=False)

    op.create_table(
        "bookings",
        sa.Column("key", STR, nullable=False),
        sa.Column("relationship", STR, nullable=False),
        sa.Column("series", STR, nullable=False),
        sa.Column("stage", STR, nullable=True),
        sa.Column("due", STR, nullable=True),
        sa.Column("start", STR, nullable=True),
        sa.Column("end", STR, nullable=True),
        sa.Column("organizer", STR, nullable=True),
        sa.Column("status", STR, nullable=False),
        sa.Column("event_id", STR, nullable=True),
        sa.Column("reason", STR, nullable=True),
        sa.Column("created_at", STR, nullable=True),
        sa.Column("updated_at", STR, nullable=True),
        sa.Column("moves", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "directory_people",
        sa.Column("email", STR, nullable=False),
        sa.Column("entry", STR, nullable=False),
        sa.Column("seen_at", STR, nullable=False),
        sa.Column("left_at", STR, nullable=True),
        sa.PrimaryKeyConstraint("email"),
    )
    op.create_table(
        "directory_reads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", STR, nullable=False),
        sa.Column("people", sa.Integer(), nullable=False),
        sa.Column("changes", sa.Integer(), nullable=False),
        sa.Column("status", STR, nullable=False),
        sa.Column("reason", STR, nullable=True),
        sa.Column("cursor", STR, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "events",
        sa.Column("owner", STR, nullable=False),
        sa.Column("id", STR, nullable=False),
        sa.Column("uid", STR, nullable=True),
        sa.Column("key", STR, nullable=True),
        sa.Column("title", STR, nullable=True),
        sa.Column("start", STR, nullable=False),
        sa.Column("end", STR, nullable=False),
        sa.Column("all_day", sa.Integer(), nullable=True),
        sa.Column("cancelled", sa.Integer(), nullable=True),
        sa.Column("transparent", sa.Integer(), nullable=True),
        sa.Column("kind", STR, nullable=True),
        sa.Column("organizer", STR, nullable=True),
        sa.Column("attendees", STR, nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("owner", "id"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "events_key",
            ["key"],
            unique=False,
            sqlite_where=sa.text("key IS NOT NULL"),
            postgresql_where=sa.text("key IS NOT NULL"),
        )
        batch_op.create_index("events_owner_end", ["owner", "end"], unique=False)
        batch_op.create_index("events_owner_start", ["owner", "start"], unique=False)

    op.create_table(
        "lines",
        sa.Column("employee", STR, nullable=False),
        sa.Column("leader", STR, nullable=False),
        sa.Column("since", STR, nullable=False),
        sa.Column("until", STR, nullable=True),
        sa.Column("reason", STR, nullable=True),
        sa.Column("successor", STR, nullable=True),
        sa.PrimaryKeyConstraint("employee", "leader", "since"),
    )
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.create_index(
            "lines_open",
            ["employee"],
            unique=False,
            sqlite_where=sa.text("until IS NULL"),
            postgresql_where=sa.text("until IS NULL"),
        )

    op.create_table(
        "meetings",
        sa.Column("id", STR, nullable=False),
        sa.Column("relationship", STR, nullable=False),
        sa.Column("series", STR, nullable=False),
        sa.Column("stage", STR, nullable=True),
        sa.Column("start", STR, nullable=False),
        sa.Column("end", STR, nullable=False),
        sa.Column("status", STR, nullable=False),
        sa.Column("key", STR, nullable=True),
        sa.Column("declined_by", STR, nullable=True),
        sa.Column("tick", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("relationship", "id"),
    )
    op.create_table(
        "meta",
        sa.Column("name", STR, nullable=False),
        sa.Column("value", STR, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "outbox",
        sa.Column("key", STR, nullable=False),
        sa.Column("meeting", STR, nullable=False),
        sa.Column("kind", STR, nullable=False),
        sa.Column("relationship", STR, nullable=True),
        sa.Column("series", STR, nullable=True),
        sa.Column("status", STR, nullable=False),
        sa.Column("message_id", STR, nullable=True),
        sa.Column("sender", STR, nullable=True),
        sa.Column("recipients", STR, nullable=True),
        sa.Column("subject", STR, nullable=True),
        sa.Column("location", STR, nullable=True),
        sa.Column("error", STR, nullable=True),
        sa.Column("created_at", STR, nullable=True),
        sa.Column("sent_at", STR, nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "pauses",
        sa.Column("employee", STR, nullable=False),
        sa.Column("until", STR, nullable=False),
        sa.Column("set_at", STR, nullable=False),
        sa.PrimaryKeyConstraint("employee"),
    )
    op.create_table(
        "plan_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("employee", STR, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("at", STR, nullable=False),
        sa.Column("by", STR, nullable=False),
        sa.Column("how", STR, nullable=False),
        sa.Column("changes", STR, nullable=False),
        sa.Column("plan", STR, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("plan_history", schema=None) as batch_op:
        batch_op.create_index("plan_history_employee", ["employee", "id"], unique=False)

    op.create_table(
        "plans",
        sa.Column("employee", STR, nullable=False),
        sa.Column("plan", STR, nullable=False),
        sa.Column("shared", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", STR, nullable=False),
        sa.Column("updated_by", STR, nullable=False),
        sa.PrimaryKeyConstraint("employee"),
    )
    op.create_table(
        "push_channels",
        sa.Column("owner", STR, nullable=False),
        sa.Column("provider", STR, nullable=False),
        sa.Column("channel_id", STR, nullable=False),
        sa.Column("resource_id", STR, nullable=True),
        sa.Column("secret", STR, nullable=False),
        sa.Column("expires", STR, nullable=False),
        sa.Column("state", STR, nullable=False),
        sa.Column("error", STR, nullable=True),
        sa.Column("created_at", STR, nullable=False),
        sa.Column("updated_at", STR, nullable=False),
        sa.Column("notified_at", STR, nullable=True),
        sa.Column("address", STR, nullable=False),
        sa.PrimaryKeyConstraint("owner"),
    )
    with op.batch_alter_table("push_channels", schema=None) as batch_op:
        batch_op.create_index("push_channels_id", ["channel_id"], unique=True)

    op.create_table(
        "replies",
        sa.Column("message_id", STR, nullable=False),
        sa.Column("ref", STR, nullable=True),
        sa.Column("meeting", STR, nullable=True),
        sa.Column("relationship", STR, nullable=True),
        sa.Column("employee", STR, nullable=True),
        sa.Column("sender", STR, nullable=True),
        sa.Column("received_at", STR, nullable=True),
        sa.Column("status", STR, nullable=False),
        sa.Column("reason", STR, nullable=True),
        sa.Column("items", STR, nullable=True),
        sa.Column("notes", STR, nullable=True),
        sa.Column("update_key", STR, nullable=True),
        sa.Column("recorded_at", STR, nullable=True),
        sa.PrimaryKeyConstraint("message_id"),
    )
    with op.batch_alter_table("replies", schema=None) as batch_op:
        batch_op.create_index("replies_employee", ["employee", "received_at"], unique=False)
        batch_op.create_index("replies_relationship", ["relationship", "recorded_at"], unique=False)

    op.create_table(
        "reply_marks",
        sa.Column("account", STR, nullable=False),
        sa.Column("mailbox", STR, nullable=False),
        sa.Column("mark", STR, nullable=False),
        sa.Column("updated_at", STR, nullable=True),
        sa.PrimaryKeyConstraint("account", "mailbox"),
    )
    op.create_table(
        "sync_state",
        sa.Column("owner", STR, nullable=False),
        sa.Column("cursor", STR, nullable=True),
        sa.Column("synced_at", STR, nullable=True),
        sa.Column("error", STR, nullable=True),
        sa.PrimaryKeyConstraint("owner"),
    )
    op.create_table(
        "ticks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("now", STR, nullable=False),
        sa.Column("started_at", STR, nullable=True),
        sa.Column("finished_at", STR, nullable=True),
        sa.Column("status", STR, nullable=True),
        sa.Column("summary", STR, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("ticks", schema=None) as batch_op:
        batch_op.create_index(
            "ticks_running",
            ["id"],
            unique=False,
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        )

    op.create_table(
        "tombstones",
        sa.Column("email", STR, nullable=False),
        sa.Column("forgotten_at", STR, nullable=False),
        sa.PrimaryKeyConstraint("email"),
    )
    op.create_table(
        "used_links",
        sa.Column("nonce", STR, nullable=False),
        sa.Column("kind", STR, nullable=False),
        sa.Column("who", STR, nullable=True),
        sa.Column("used_at", STR, nullable=False),
        sa.Column("data", STR, nullable=True),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_table(
        "watched",
        sa.Column("relationship", STR, nullable=False),
        sa.Column("since", STR, nullable=False),
        sa.PrimaryKeyConstraint("relationship"),
    )
    meta = sa.table("meta", sa.column("name"), sa.column("value"))
    op.bulk_insert(meta, [{"name": "mail_secret", "value": secrets.token_hex(32)}])


def downgrade() -> None:
    op.drop_table("watched")
    op.drop_table("used_links")
    op.drop_table("tombstones")
    with op.batch_alter_table("ticks", schema=None) as batch_op:
        batch_op.drop_index(
            "ticks_running",
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        )

    op.drop_table("ticks")
    op.drop_table("sync_state")
    op.drop_table("reply_marks")
    with op.batch_alter_table("replies", schema=None) as batch_op:
        batch_op.drop_index("replies_relationship")
        batch_op.drop_index("replies_employee")

    op.drop_table("replies")
    with op.batch_alter_table("push_channels", schema=None) as batch_op:
        batch_op.drop_index("push_channels_id")

    op.drop_table("push_channels")
    op.drop_table("plans")
    with op.batch_alter_table("plan_history", schema=None) as batch_op:
        batch_op.drop_index("plan_history_employee")

    op.drop_table("plan_history")
    op.drop_table("pauses")
    op.drop_table("outbox")
    op.drop_table("meta")
    op.drop_table("meetings")
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.drop_index(
            "lines_open",
            sqlite_where=sa.text("until IS NULL"),
            postgresql_where=sa.text("until IS NULL"),
        )

    op.drop_table("lines")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("events_owner_start")
        batch_op.drop_index("events_owner_end")
        batch_op.drop_index(
            "events_key",
            sqlite_where=sa.text("key IS NOT NULL"),
            postgresql_where=sa.text("key IS NOT NULL"),
        )

    op.drop_table("events")
    op.drop_table("directory_reads")
    op.drop_table("directory_people")
    op.drop_table("bookings")
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.drop_index("audit_tick")
        batch_op.drop_index("audit_relationship_kind")
        batch_op.drop_index("audit_relationship")

    op.drop_table("audit")
    op.drop_table("actions")
