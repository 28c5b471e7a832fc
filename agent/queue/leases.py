"""Leases in PostgreSQL: advisory locks, held by a connection.

A scheduling unit is planned by one worker at a time: the worker takes a session-level
``pg_try_advisory_lock`` for each person of the unit (so two units that share an
employee do not book over each other either) on its own connection. When the worker
dies, PostgreSQL sees the connection close and frees its locks: no expiry to tune, no
stale lease to clean up. The scheduler's election is the same kind of lock, waited on.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import psycopg

log = logging.getLogger("cadence.queue")


class Taken(Exception):
    """Another process holds one of the leases."""


def key_of(name: str) -> int:
    """A stable signed 64-bit key for an advisory lock (PostgreSQL's bigint)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Leases:
    """The advisory locks of one process (or thread): one connection of its own,
    opened again when it was lost (a lost connection lost its locks with it)."""

    def __init__(self, url: str, namespace: str = "cadence") -> None:
        self.url = url
        self.namespace = namespace
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self.url, autocommit=True, connect_timeout=10, application_name="cadence"
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def try_take(self, name: str) -> bool:
        row = (
            self._connection()
            .execute("SELECT pg_try_advisory_lock(%s)", [key_of(f"{self.namespace}:{name}")])
            .fetchone()
        )
        return bool(row and row[0])

    def give_back(self, name: str) -> None:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            return  # the connection is gone, and the lock with it
        conn.execute("SELECT pg_advisory_unlock(%s)", [key_of(f"{self.namespace}:{name}")])

    @contextmanager
    def holding(self, names: Iterable[str]) -> Iterator[None]:
        """Hold every lease in ``names`` or raise :class:`Taken` (holding none)."""
        taken: list[str] = []
        try:
            for name in sorted(set(names)):
                if not self.try_take(name):
                    raise Taken(name)
                taken.append(name)
            yield
        finally:
            for name in reversed(taken):
                try:
                    self.give_back(name)
                except psycopg.Error:
                    self.close()  # closing the connection frees whatever it held

    def alive(self) -> bool:
        """Whether the connection (and so every lock it holds) is still there."""
        try:
            self._connection().execute("SELECT 1")
            return True
        except psycopg.Error:
            return False


class Election:
    """Exactly one active scheduler: whoever holds the ``scheduler`` lock. A standby
    tries again every ``poll`` seconds and takes over when the holder's connection
    closes (its process died or stopped)."""

    NAME = "scheduler"

    def __init__(self, url: str, namespace: str = "cadence", poll: float = 1.0) -> None:
        self.leases = Leases(url, namespace)
        self.poll = poll

    def campaign(self, should_stop: Callable[[], bool]) -> bool:
        """Wait until this process leads (True) or ``should_stop()`` (False)."""
        waiting_said = False
        while not should_stop():
            try:
                if self.leases.try_take(self.NAME):
                    return True
            except psycopg.Error as exc:
                log.warning("scheduler election: PostgreSQL unreachable (%s)", type(exc).__name__)
                self.leases.close()
            if not waiting_said:
                log.info("another scheduler is active: standing by")
                waiting_said = True
            time.sleep(self.poll)
        return False

    def still_leading(self) -> bool:
        return self.leases.alive()

    def resign(self) -> None:
        self.leases.close()
