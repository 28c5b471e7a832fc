"""Claims: the first record of a booking or a mail, before the provider is called, is
a claim that another process cannot take while it holds.

A booking's or a mail's key is its row's primary key. ``claim_booking`` and
``claim_outbox`` insert the row, or, when it is already there, take it over only if
nobody else holds it (no claim, one of this store's own, or one whose lease ran out: its
process died mid-way) and nobody did it meanwhile (a booking ``booked``, a mail ``sent``). Two processes racing on one key therefore make one event and send
one mail; the loser is told (``Claimed``) and leaves the key to the next tick.

A tick holding the store's tick lock knows no other tick runs, so it ends every claim
(``release_claims``) as it ends the ticks a killed process left running.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from agent.core.errors import CadenceError
from agent.core.timestamps import to_store
from agent.store import schema
from agent.store.database import Database

#: how long a claim holds without its process finishing: longer than any provider call
LEASE = timedelta(minutes=10)
#: the statuses of a row whose side effect is under way
IN_FLIGHT = {"bookings": ("pending", "moving", "cancelling"), "outbox": ("pending", "sending")}
#: the statuses of a row whose side effect happened: the planner never makes it again,
#: so a process that planned it before another one did it must not either
DONE = {"bookings": ("booked", "moving"), "outbox": ("sent", "uncertain")}


class Claimed(CadenceError):
    """Another process is making this booking or sending this mail right now."""


class ClaimRows:
    """Mixed into ``Store``, whose ``db`` it uses."""

    db: Database

    @property
    def holder(self) -> str:
        """This store's name in the claims it makes: host, process, and a random part
        (two stores of one process are two claimants)."""
        found: str | None = getattr(self, "_holder", None)
        if found is None:
            found = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
            self._holder = found
        return found

    def claim_booking(self, row: dict[str, Any], now: datetime) -> None:
        """Record a booking before its event is made (``row`` as ``save_booking`` takes
        it), holding its key; raise ``Claimed`` if another process holds it."""
        self._claim("bookings", row, now, replace=True)

    def claim_outbox(self, row: dict[str, Any], now: datetime) -> None:
        """Hold a mail's key before it is sent: a new row is ``row``; a row already
        there keeps its columns (a ``sending`` left by a crash says to ask the provider
        first). Raise ``Claimed`` if another process holds it."""
        self._claim("outbox", row, now, replace=False)

    def _claim(self, name: str, row: dict[str, Any], now: datetime, *, replace: bool) -> None:
        table = schema.metadata.tables[name]
        wall = datetime.now(UTC)
        claim = {"claimed_by": self.holder, "claimed_until": to_store(wall + LEASE)}
        stamps = {"created_at": to_store(now)}
        if name == "bookings":
            stamps["updated_at"] = to_store(now)
        with self.db.atomic():
            fresh = {k: v for k, v in {**stamps, **row, **claim}.items() if k in table.c}
            made = self.db.run(
                self.db.insert(table)
                .values(fresh)
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(table.c.key)
            ).rows
            if made:
                return
            query = select(table.c.claimed_by, table.c.claimed_until, table.c.status).where(
                table.c.key == row["key"]
            )
            if self.db.name == "postgresql":
                query = query.with_for_update()
            holder, until, status = self.db.run(query).rows[0]
            if status in DONE[name]:
                raise Claimed(f"{row['key']} is {status} already, by another process")
            if holder not in (None, self.holder) and until and until > to_store(wall):
                raise Claimed(
                    f"{row['key']} is being handled by another process ({holder}, until "
                    f"{until}); the next tick looks at it again"
                )
            values = (
                {k: v for k, v in row.items() if k in table.c and k != "key"} if replace else {}
            )
            if replace and name == "bookings":
                values["updated_at"] = to_store(now)
            self.db.run(table.update().where(table.c.key == row["key"]).values({**values, **claim}))

    def release_claims(self) -> None:
        """End every claim. Only a tick that holds the tick lock may call this (then no
        other process acts on the store)."""
        with self.db.atomic():
            for name in IN_FLIGHT:
                self.db.execute(
                    f"UPDATE {name} SET claimed_by = NULL, claimed_until = NULL "
                    "WHERE claimed_by IS NOT NULL"
                )

    def _settled(self, name: str, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` with its claim ended when its status says the side effect is over."""
        status = row.get("status")
        if status is not None and status not in IN_FLIGHT[name]:
            return {**row, "claimed_by": None, "claimed_until": None}
        return row
