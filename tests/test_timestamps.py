"""The store's one timestamp form, written and read back by every module."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from agent.core.timestamps import from_store, to_store


def test_round_trip_is_utc_to_the_second() -> None:
    berlin = timezone(timedelta(hours=1))
    dt = datetime(2026, 3, 2, 10, 0, 7, 900_000, tzinfo=berlin)
    text = to_store(dt)
    assert text == "2026-03-02T09:00:07Z"
    back = from_store(text)
    assert back == dt.replace(microsecond=0)
    assert back.utcoffset() == timedelta(0)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_store(datetime(2026, 3, 2, 9))


@pytest.mark.parametrize(
    "text", ["2026-03-02T09:00:00", "2026-03-02T09:00:00+00:00", "2026-03-02 09:00:00Z", ""]
)
def test_other_forms_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        from_store(text)


def test_text_order_is_time_order() -> None:
    # b is later on its own wall clock, earlier in time
    a = datetime(2026, 1, 9, 23, 30, tzinfo=UTC)
    b = datetime(2026, 1, 10, 0, 15, tzinfo=timezone(timedelta(hours=2)))
    assert b < a
    assert to_store(b) < to_store(a)
