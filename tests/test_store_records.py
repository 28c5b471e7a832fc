"""The store's bookings read back as typed records; what it writes stays text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.core.records import StoredBooking
from agent.store.sqlite import Store

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KEY = "ana/ben/deep_dive/2026-03-20"


def test_a_booking_reads_back_with_aware_datetimes_and_keeps_its_creation(
    store_at: Path | str,
) -> None:
    store = Store(store_at)
    try:
        store.save_booking(
            {
                "key": KEY,
                "relationship": "ana@acme.example/ben@acme.example",
                "series": "deep_dive",
                "stage": "align",
                "due": "2026-03-20T00:00:00Z",
                "start": "2026-03-18T13:00:00Z",
                "end": "2026-03-18T14:00:00Z",
                "organizer": "ana@acme.example",
                "status": "pending",
                "reason": "due in 18 days",
            },
            NOW,
        )
        later = NOW + timedelta(minutes=5)
        store.save_booking({"key": KEY, "status": "booked", "event_id": "ev1"}, later)
        got = store.booking(KEY)
        assert got == StoredBooking(
            key=KEY,
            relationship="ana@acme.example/ben@acme.example",
            series="deep_dive",
            status="booked",
            stage="align",
            due=datetime(2026, 3, 20, tzinfo=UTC),
            start=datetime(2026, 3, 18, 13, tzinfo=UTC),
            end=datetime(2026, 3, 18, 14, tzinfo=UTC),
            organizer="ana@acme.example",
            event_id="ev1",
            reason="due in 18 days",
            moves=0,
            created_at=NOW,
            updated_at=later,
        )
        assert got is not None and got.start is not None and got.start.utcoffset() == timedelta(0)
        assert store.bookings("ana@acme.example/ben@acme.example") == [got]
        assert store.bookings("someone@else.example/ben@acme.example") == []
        assert store.booking("no such key") is None
        # the disk keeps the store's text form
        raw = store.db.execute("SELECT start, created_at FROM bookings").fetchone()
        assert raw == ("2026-03-18T13:00:00Z", "2026-03-02T09:00:00Z")
    finally:
        store.close()


def test_a_booking_without_a_slot_reads_as_none(store_at: Path | str) -> None:
    store = Store(store_at)
    try:
        store.save_booking(
            {"key": KEY, "relationship": "a/b", "series": "check_in", "status": "pending"}, NOW
        )
        got = store.booking(KEY)
        assert got is not None
        assert (got.start, got.end, got.due, got.stage, got.moves) == (None, None, None, None, 0)
    finally:
        store.close()
