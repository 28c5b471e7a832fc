"""Message-IDs no one can guess, yet the same in ``cadence plan`` and ``cadence run``.

A reply to a recap is matched by In-Reply-To; an id derived from the outbox key alone
(meeting and kind) would let anyone forge one. The id is an HMAC of the key under the
store's random secret: two stores give different ids for the same key, one store
always the same, and an outbox row written before keeps the id it has.
"""

from __future__ import annotations

import email
import hashlib
import sqlite3
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest
import sqlite_utils
from hypothesis import given
from hypothesis import strategies as st

from agent.rules.mailplan import MailContext, Outboxed, message_id
from agent.store import sqlite as store_mod
from agent.store.sqlite import SCHEMA_VERSION, Store

KEY = "meeting-1@acme.example:recap"


def test_two_stores_give_the_same_key_different_ids_and_one_store_always_the_same(
    tmp_path: Path,
) -> None:
    one, two = Store(tmp_path / "one.db"), Store(tmp_path / "two.db")
    try:
        first = message_id(KEY, one.mail_secret)
        assert first != message_id(KEY, two.mail_secret)
        assert len(one.mail_secret) == 32 and one.mail_secret != two.mail_secret
    finally:
        one.close(), two.close()
    again = Store(tmp_path / "one.db")  # reopened: the secret is kept, not drawn again
    try:
        assert message_id(KEY, again.mail_secret) == first
    finally:
        again.close()
    a, b = Store(), Store()
    assert a.mail_secret != b.mail_secret  # each memory store has its own
    a.close(), b.close()


def test_the_id_says_nothing_of_the_meeting() -> None:
    mid = message_id(KEY, b"s" * 32)
    assert "meeting" not in mid and "acme" not in mid and mid.endswith(".recap@cadence>")
    old_style = hashlib.sha256(KEY.encode()).hexdigest()[:24]
    assert old_style not in mid
    with pytest.raises(ValueError, match="secret"):
        message_id(KEY, b"")


@given(key=st.text(min_size=1, max_size=300), secret=st.binary(min_size=1, max_size=64))
def test_any_key_gives_one_short_valid_msg_id(key: str, secret: bytes) -> None:
    mid = message_id(key, secret)
    assert len(f"In-Reply-To: {mid}") <= 78
    local = mid[1:-1].split("@")[0]
    assert len(local) <= 48 and mid.count("@") == 1
    raw = f"Message-ID: {mid}\r\nIn-Reply-To: {mid}\r\n\r\n".encode()
    back = email.message_from_bytes(raw, policy=policy.default)
    assert str(back["Message-ID"]) == mid and str(back["In-Reply-To"]) == mid
    assert not back["Message-ID"].defects


def test_an_outbox_row_keeps_the_id_it_was_written_with() -> None:
    ctx = MailContext(
        now=datetime(2026, 11, 24, tzinfo=UTC),
        relationships=(),
        secret=b"k" * 32,
        outbox={
            "m:recap": Outboxed("sending", "<m.recap@cadence>"),
            "m:agenda": Outboxed("failed"),
        },
    )
    assert ctx.message_id("m:recap") == "<m.recap@cadence>"  # a retry is still recognised
    assert ctx.message_id("m:agenda") == message_id("m:agenda", b"k" * 32)
    assert ctx.message_id("n:recap") == message_id("n:recap", b"k" * 32)


def test_a_version_6_store_gains_a_secret_and_keeps_its_outbox(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(sqlite3.connect(str(path), isolation_level=None))
    for number, step in enumerate(store_mod.MIGRATIONS[:6], start=1):
        step(db)
        db.execute(f"PRAGMA user_version = {number}")
    db.execute(
        "INSERT INTO outbox (key, meeting, kind, status, message_id) "
        "VALUES ('m:recap', 'm', 'recap', 'sent', '<m.recap@cadence>')"
    )
    db.close()
    store = Store(path)
    try:
        assert store.version == SCHEMA_VERSION >= 8
        assert len(store.mail_secret) == 32
        assert store.outbox_by_message_id("<m.recap@cadence>")["key"] == "m:recap"  # type: ignore[index]
    finally:
        store.close()
