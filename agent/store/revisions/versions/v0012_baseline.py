"""The schema of legacy version 12: every table and index, and the store's secret.

A new store starts here on every backend; an SQLite store made by the legacy steps
(``agent.store.migrations``) is brought to their version 12 and stamped with this one.
Columns are written as ``agent.store.revisions.kit.column`` reads them: ``#`` an
integer, ``!`` NOT NULL, ``=0`` a default.

Revision ID: 0012
Revises: (none)
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

from agent.store.revisions.kit import index, table

revision = "0012"
down_revision = None

TIMES = "created_at updated_at"


def upgrade() -> None:
    table(
        "actions",
        f"id#! employee! norm! title! goal due status! relationship meeting source {TIMES} done_at",
        key=["id"], unique=["employee", "norm"], autoincrement=True,
    )  # fmt: skip
    table(
        "audit", "id#! tick# at! relationship series kind! message! data",
        key=["id"], autoincrement=True,
    )  # fmt: skip
    index("audit_relationship", "audit", "relationship", "at")
    index("audit_relationship_kind", "audit", "relationship", "kind", "id")
    index("audit_tick", "audit", "tick")
    table(
        "bookings",
        "key! relationship! series! stage due start end organizer status! event_id reason"
        f" {TIMES} moves#!=0",
        key=["key"],
    )  # fmt: skip
    table("directory_people", "email! entry! seen_at! left_at", key=["email"])
    table(
        "directory_reads", "id#! at! people#! changes#! status! reason cursor", key=["id"]
    )  # fmt: skip
    table(
        "events",
        "owner! id! uid key title start! end! all_day# cancelled# transparent# kind"
        " organizer attendees sequence#",
        key=["owner", "id"],
    )  # fmt: skip
    index("events_key", "events", "key", where="key IS NOT NULL")
    index("events_owner_end", "events", "owner", "end")
    index("events_owner_start", "events", "owner", "start")
    table(
        "lines", "employee! leader! since! until reason successor",
        key=["employee", "leader", "since"],
    )  # fmt: skip
    index("lines_open", "lines", "employee", where="until IS NULL")
    table(
        "meetings", "id! relationship! series! stage start! end! status! key declined_by tick#",
        key=["relationship", "id"],
    )  # fmt: skip
    table("meta", "name! value!", key=["name"])
    table(
        "outbox",
        "key! meeting! kind! relationship series status! message_id sender recipients"
        " subject location error created_at sent_at",
        key=["key"],
    )  # fmt: skip
    table("pauses", "employee! until! set_at!", key=["employee"])
    table(
        "plan_history", "id#! employee! version#! at! by! how! changes! plan!",
        key=["id"], autoincrement=True,
    )  # fmt: skip
    index("plan_history_employee", "plan_history", "employee", "id")
    table(
        "plans", "employee! plan! shared#!=0 version#! updated_at! updated_by!",
        key=["employee"],
    )  # fmt: skip
    table(
        "push_channels",
        "owner! provider! channel_id! resource_id secret! expires! state! error created_at!"
        " updated_at! notified_at address!",
        key=["owner"],
    )  # fmt: skip
    op.create_index("push_channels_id", "push_channels", ["channel_id"], unique=True)
    table(
        "replies",
        "message_id! ref meeting relationship employee sender received_at status! reason"
        " items notes update_key recorded_at",
        key=["message_id"],
    )  # fmt: skip
    index("replies_employee", "replies", "employee", "received_at")
    index("replies_relationship", "replies", "relationship", "recorded_at")
    table("reply_marks", "account! mailbox! mark! updated_at", key=["account", "mailbox"])
    table("sync_state", "owner! cursor synced_at error", key=["owner"])
    table(
        "ticks", "id#! now! started_at finished_at status summary",
        key=["id"], autoincrement=True,
    )  # fmt: skip
    index("ticks_running", "ticks", "id", where="status = 'running'")
    table("tombstones", "email! forgotten_at!", key=["email"])
    table("used_links", "nonce! kind! who used_at! data", key=["nonce"])
    table("watched", "relationship! since!", key=["relationship"])
    meta = sa.table("meta", sa.column("name"), sa.column("value"))
    op.bulk_insert(meta, [{"name": "mail_secret", "value": secrets.token_hex(32)}])


def downgrade() -> None:
    # a table's indexes go with it
    for name in (
        "watched", "used_links", "tombstones", "ticks", "sync_state", "reply_marks",
        "replies", "push_channels", "plans", "plan_history", "pauses", "outbox", "meta",
        "meetings", "lines", "events", "directory_reads", "directory_people", "bookings",
        "audit", "actions",
    ):  # fmt: skip
        op.drop_table(name)
