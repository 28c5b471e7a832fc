"""The store's timestamp text: UTC to the second, as ``2026-03-02T09:00:00Z``.

One form everywhere, so that stored timestamps compare and sort as text and every module
reads back exactly what another wrote.
"""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def to_store(dt: datetime) -> str:
    """Write ``dt`` in the store's form; raise ValueError for a naive datetime, whose
    instant is unknown (astimezone would guess the machine's zone)."""
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt.isoformat()} where an aware one is required")
    return dt.astimezone(UTC).strftime(FORMAT)


def from_store(text: str) -> datetime:
    """Read the store's form as an aware UTC datetime; raise ValueError for other text.

    fromisoformat reads the "Z" as UTC and is 30 times faster than strptime, which
    matters because the assess step reads every relationship's year of events each tick.
    """
    if len(text) != 20 or text[-1] != "Z" or text[10] != "T":
        raise ValueError(f"not a UTC timestamp of the store: {text!r}")
    return datetime.fromisoformat(text)
