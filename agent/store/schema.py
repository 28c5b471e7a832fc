"""The store's tables, declared once for every backend (SQLAlchemy Core).

Text is stored as text on both backends, timestamps included (ISO 8601, UTC, as
``agent.core.timestamps.to_store`` writes them), and JSON as text: the same rows read the
same everywhere, and stores made before this module keep working. On PostgreSQL text
columns compare byte by byte (``COLLATE "C"``), as SQLite's do, so that ordering,
``LIKE`` and the timestamps' comparisons agree on both.

The Alembic revisions in ``agent.store.revisions`` create these tables; a change here
comes with a new revision (``tests/test_store_schema.py`` compares the two).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

#: text compared as bytes on PostgreSQL too (its default collation sorts by language)
STR: TypeEngine[str] = Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")

metadata = MetaData()


def _text(name: str, **kw: object) -> Column[str]:
    return Column(name, STR, **kw)  # type: ignore[arg-type]


def _key(name: str) -> Column[str]:
    """A text primary key (NOT NULL by being one)."""
    return _text(name, primary_key=True)


def _required(name: str) -> Column[str]:
    return _text(name, nullable=False)


def _int(name: str, **kw: object) -> Column[int]:
    return Column(name, Integer, **kw)  # type: ignore[arg-type]


def _where(condition: str) -> dict[str, Any]:
    """A partial index's condition, on both backends."""
    return {"sqlite_where": text(condition), "postgresql_where": text(condition)}


sync_state = Table(
    "sync_state", metadata, _key("owner"), _text("cursor"), _text("synced_at"), _text("error"),
)  # fmt: skip

events = Table(
    "events", metadata, _required("owner"), _required("id"), _text("uid"), _text("key"),
    _text("title"), _required("start"), _required("end"), _int("all_day"), _int("cancelled"),
    _int("transparent"), _text("kind"), _text("organizer"), _text("attendees"), _int("sequence"),
    PrimaryKeyConstraint("owner", "id"),
)  # fmt: skip
Index("events_owner_start", events.c.owner, events.c.start)
Index("events_key", events.c.key, **_where("key IS NOT NULL"))
Index("events_owner_end", events.c.owner, events.c.end)

bookings = Table(
    "bookings", metadata, _key("key"), _required("relationship"), _required("series"),
    _text("stage"), _text("due"), _text("start"), _text("end"), _text("organizer"),
    _required("status"), _text("event_id"), _text("reason"), _text("created_at"),
    _text("updated_at"), _int("moves", nullable=False, server_default=text("0")),
    # 0013: the process making the event, and until when (agent.store.claims)
    _text("claimed_by"), _text("claimed_until"),
)  # fmt: skip
#: 0015: a worker's unit reads its own relationships' bookings and mails
Index("bookings_relationship", bookings.c.relationship)

outbox = Table(
    "outbox", metadata, _key("key"), _required("meeting"), _required("kind"),
    _text("relationship"), _text("series"), _required("status"), _text("message_id"),
    _text("sender"), _text("recipients"), _text("subject"), _text("location"), _text("error"),
    _text("created_at"), _text("sent_at"),
    # 0013: the process sending the mail, and until when (agent.store.claims)
    _text("claimed_by"), _text("claimed_until"),
)  # fmt: skip
Index("outbox_relationship", outbox.c.relationship)

meetings = Table(
    "meetings", metadata, _required("id"), _required("relationship"), _required("series"),
    _text("stage"), _required("start"), _required("end"), _required("status"), _text("key"),
    _text("declined_by"), _int("tick"), PrimaryKeyConstraint("relationship", "id"),
)  # fmt: skip

ticks = Table(
    "ticks", metadata, _int("id", primary_key=True), _required("now"), _text("started_at"),
    _text("finished_at"), _text("status"), _text("summary"), sqlite_autoincrement=True,
)  # fmt: skip
Index("ticks_running", ticks.c.id, **_where("status = 'running'"))

audit = Table(
    "audit", metadata, _int("id", primary_key=True), _int("tick"), _required("at"),
    _text("relationship"), _text("series"), _required("kind"), _required("message"), _text("data"),
    sqlite_autoincrement=True,
)  # fmt: skip
Index("audit_tick", audit.c.tick)
Index("audit_relationship", audit.c.relationship, audit.c.at)
Index("audit_relationship_kind", audit.c.relationship, audit.c.kind, audit.c.id)

replies = Table(
    "replies", metadata, _key("message_id"), _text("ref"), _text("meeting"), _text("relationship"),
    _text("employee"), _text("sender"), _text("received_at"), _required("status"), _text("reason"),
    _text("items"), _text("notes"), _text("update_key"), _text("recorded_at"),
)  # fmt: skip
Index("replies_employee", replies.c.employee, replies.c.received_at)
Index("replies_relationship", replies.c.relationship, replies.c.recorded_at)

actions = Table(
    "actions", metadata, _int("id", primary_key=True), _required("employee"), _required("norm"),
    _required("title"), _text("goal"), _text("due"), _required("status"), _text("relationship"),
    _text("meeting"), _text("source"), _text("created_at"), _text("updated_at"), _text("done_at"),
    UniqueConstraint("employee", "norm"), sqlite_autoincrement=True,
)  # fmt: skip

reply_marks = Table(
    "reply_marks", metadata, _required("account"), _required("mailbox"), _required("mark"),
    _text("updated_at"), PrimaryKeyConstraint("account", "mailbox"),
)  # fmt: skip

meta = Table("meta", metadata, _key("name"), _required("value"))

watched = Table("watched", metadata, _key("relationship"), _required("since"))

directory_people = Table(
    "directory_people", metadata, _key("email"), _required("entry"), _required("seen_at"),
    _text("left_at"),
)  # fmt: skip

lines = Table(
    "lines", metadata, _required("employee"), _required("leader"), _required("since"),
    _text("until"), _text("reason"), _text("successor"),
    PrimaryKeyConstraint("employee", "leader", "since"),
)  # fmt: skip
Index("lines_open", lines.c.employee, **_where("until IS NULL"))

directory_reads = Table(
    "directory_reads", metadata, _int("id", primary_key=True), _required("at"),
    _int("people", nullable=False), _int("changes", nullable=False), _required("status"),
    _text("reason"), _text("cursor"),
)  # fmt: skip

tombstones = Table("tombstones", metadata, _key("email"), _required("forgotten_at"))

push_channels = Table(
    "push_channels", metadata, _key("owner"), _required("provider"), _required("channel_id"),
    _text("resource_id"), _required("secret"), _required("expires"), _required("state"),
    _text("error"), _required("created_at"), _required("updated_at"), _text("notified_at"),
    _required("address"),
)  # fmt: skip
Index("push_channels_id", push_channels.c.channel_id, unique=True)

plans = Table(
    "plans", metadata, _key("employee"), _required("plan"),
    _int("shared", nullable=False, server_default=text("0")), _int("version", nullable=False),
    _required("updated_at"), _required("updated_by"),
)  # fmt: skip

plan_history = Table(
    "plan_history", metadata, _int("id", primary_key=True), _required("employee"),
    _int("version", nullable=False), _required("at"), _required("by"), _required("how"),
    _required("changes"), _required("plan"), sqlite_autoincrement=True,
)  # fmt: skip
Index("plan_history_employee", plan_history.c.employee, plan_history.c.id)

used_links = Table(
    "used_links", metadata, _key("nonce"), _required("kind"), _text("who"), _required("used_at"),
    _text("data"),
)  # fmt: skip

#: the people an employee chose, one by one, to read their plan (revision 0014)
plan_readers = Table(
    "plan_readers", metadata, _key("employee"), _key("reader"), _required("added_at"),
    _required("added_by"),
)  # fmt: skip
Index("plan_readers_reader", plan_readers.c.reader)

pauses = Table("pauses", metadata, _key("employee"), _required("until"), _required("set_at"))

#: the guard's tally of each round of the task queue (revision 0016, agent.store.rounds)
guard_rounds = Table(
    "guard_rounds", metadata, _key("round"), _int("actions", nullable=False),
    _int("relationships", nullable=False), _required("created_at"),
)  # fmt: skip

#: the tables in an order that copies them parents first (there are no foreign keys)
TABLES = tuple(metadata.tables)
