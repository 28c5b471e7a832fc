"""The push channels in the store: one per calendar, with its secret and state.

States: ``active`` (notifications arrive), ``failed`` (could not be opened or renewed),
``missed`` (the provider said notifications were lost), ``removed`` (the provider ended
it), ``refused`` (the server does not offer subscriptions to this calendar: it is polled
at every tick, and asked again once ``expires`` has passed). Only ``active`` lets the
tick poll the calendar at the longer ``push.poll``.

An Exchange pull subscription is a row like the others: ``channel_id`` is the
subscription id, ``resource_id`` the watermark its events were last read up to (so that a
restarted service asks from there), ``expires`` when it ends unless it is asked again,
``address`` the account it is asked through, and it has no secret (nothing calls
Cadence back). A streaming subscription's ``resource_id`` is ``stream`` (it has no
watermark); a pull subscription made where streaming was refused has ``pull:`` before
its watermark (see ``agent.tick.pulls``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.core.model import Channel
from agent.core.timestamps import from_store, to_store
from agent.store.sqlite import Store

STATES = ("active", "failed", "missed", "removed", "refused")


@dataclass(frozen=True)
class ChannelRow:
    channel: Channel
    state: str
    error: str | None
    notified_at: datetime | None


def _row(r: dict[str, Any]) -> ChannelRow:
    channel = Channel(
        owner=r["owner"],
        provider=r["provider"],
        id=r["channel_id"],
        resource_id=r["resource_id"] or "",
        secret=r["secret"],
        expires=from_store(r["expires"]),
        address=r["address"],
    )
    notified = from_store(r["notified_at"]) if r["notified_at"] else None
    return ChannelRow(channel, r["state"], r["error"], notified)


class PushRows:
    """Reads and writes of ``push_channels`` on one store."""

    def __init__(self, store: Store) -> None:
        self.db = store.db

    def all(self) -> dict[str, ChannelRow]:
        return {r["owner"]: _row(r) for r in self.db.query("SELECT * FROM push_channels")}

    def by_id(self, channel_id: str) -> ChannelRow | None:
        rows = list(self.db.query("SELECT * FROM push_channels WHERE channel_id = ?", [channel_id]))
        return _row(rows[0]) if rows else None

    def save(
        self, channel: Channel, now: datetime, state: str = "active", error: str | None = None
    ) -> None:
        """Record a channel opened or renewed (the calendar's previous one is replaced)."""
        with self.db.atomic():
            self.db.execute(
                """INSERT INTO push_channels (owner, provider, channel_id, resource_id, secret,
                       expires, state, error, created_at, updated_at, address)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (owner) DO UPDATE SET provider = excluded.provider,
                       channel_id = excluded.channel_id, resource_id = excluded.resource_id,
                       secret = excluded.secret, expires = excluded.expires,
                       state = excluded.state, error = excluded.error,
                       updated_at = excluded.updated_at,
                       address = excluded.address""",
                [
                    channel.owner,
                    channel.provider,
                    channel.id,
                    channel.resource_id,
                    channel.secret,
                    to_store(channel.expires),
                    state,
                    error,
                    to_store(now),
                    to_store(now),
                    channel.address,
                ],
            )

    def mark(self, owner: str, state: str, now: datetime, error: str | None = None) -> None:
        assert state in STATES
        with self.db.atomic():
            self.db.execute(
                "UPDATE push_channels SET state = ?, error = ?, updated_at = ? WHERE owner = ?",
                [state, error, to_store(now), owner],
            )

    def notified(self, owners: Iterable[str], now: datetime) -> None:
        with self.db.atomic():
            for owner in owners:
                self.db.execute(
                    "UPDATE push_channels SET notified_at = ? WHERE owner = ?",
                    [to_store(now), owner],
                )

    def pulled(
        self, owner: str, subscription: str, watermark: str, expires: datetime, now: datetime
    ) -> bool:
        """Record that a pull subscription was read up to ``watermark`` (which keeps it
        alive until ``expires``); False when the row now holds another subscription."""
        with self.db.atomic():
            cursor = self.db.execute(
                """UPDATE push_channels SET resource_id = ?, expires = ?, updated_at = ?
                   WHERE owner = ? AND channel_id = ?""",
                [watermark, to_store(expires), to_store(now), owner, subscription],
            )
            return bool(cursor.rowcount)

    def drop(self, owner: str) -> None:
        with self.db.atomic():
            self.db.execute("DELETE FROM push_channels WHERE owner = ?", [owner])

    def polled(self) -> dict[str, datetime]:
        """When each calendar was last read (its sync cursor's time)."""
        rows = self.db.query("SELECT owner, synced_at FROM sync_state WHERE synced_at IS NOT NULL")
        return {r["owner"]: from_store(r["synced_at"]) for r in rows}

    def counts(self) -> dict[str, int]:
        """Channels by state, every state named."""
        found = dict.fromkeys(STATES, 0)
        for r in self.db.query("SELECT state, COUNT(*) AS n FROM push_channels GROUP BY state"):
            found[r["state"]] = r["n"]
        return found
