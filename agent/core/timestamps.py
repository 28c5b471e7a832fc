"""The store's one timestamp format: UTC, to the second, as ``2026-12-04T09:30:00Z``."""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def to_store(dt: datetime) -> str:
    """Format an aware datetime as the store writes it."""
    return dt.astimezone(UTC).strftime(FORMAT)


def from_store(text: str) -> datetime:
    """Read a store timestamp back as an aware UTC datetime."""
    return datetime.strptime(text, FORMAT).replace(tzinfo=UTC)
