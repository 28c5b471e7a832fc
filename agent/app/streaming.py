"""The streamer of ``cadence serve``: it holds the Exchange streaming connections
(``GetStreamingEvents``), each for up to ``push.stream_group`` subscriptions of one
account, and hands a calendar that changed to the reactor, as a pull or a Google or
Graph notification would: the same debounce, the same focused tick.

One thread (``cadence-stream``) looks at the store every few seconds, or when woken,
through one store it keeps open for the streamer's life (a look that failed opens it
afresh: its connection may be what broke): it marks the calendars of a connection
refused for good, makes again the subscriptions a connection reported lost, keeps alive
in the store for another ``pulls.LIFETIME`` the subscriptions of each connection the
server now holds, then opens a connection for the streaming subscriptions no connection
holds. Each connection runs in a thread of its own with an EWS connection of its own,
until the server closes it after ``push.stream_timeout``; its subscriptions are then
free, and the next look opens them again (new ones join then).

Only a connection the server holds keeps its subscriptions alive, not one asked for: a
connection refused again and again for a while (a mailbox at its limit of open
connections, a proxy that drops held answers) lets them expire after ``pulls.LIFETIME``,
and its calendars are then read at every tick and subscribed again, where before they
looked watched while nothing could tell of their changes.

A lost subscription is made again before its calendar is read, so that no change falls
between the read and the new subscription; one lost again within ``AGAIN`` is made a
pull subscription instead. A connection refused for good (a server that
no longer streams) marks its calendars ``failed``: the tick reads them at every tick and
the next upkeep subscribes them again, to pull where streaming is refused. A connection
that fails for a while is opened again after ``RETRY``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent import connectors
from agent.app.pulling import Side
from agent.connectors.base import OPEN, Stream, Streams
from agent.core.errors import CadenceError, PermanentError
from agent.core.model import Person, WorkingHours
from agent.core.retry import RetryPolicy
from agent.settings.config import Settings
from agent.store.push import PushRows
from agent.store.sqlite import Store
from agent.tick import metrics, pulls
from agent.tick.push import PULLED

log = logging.getLogger("cadence.push")

#: how often the store is looked at for subscriptions to hold, seconds (an upkeep that
#: made some wakes the streamer at once)
LOOK = 5.0
#: how long an account whose connection failed waits before the next one, seconds
RETRY = 30.0
#: a calendar whose new streaming subscription is lost again within this time, seconds,
#: gets a pull one (a server that cannot hold its subscriptions together would have
#: them made again and again)
AGAIN = 600.0


@dataclass(eq=False)
class Connection:
    """One streaming connection: its account and subscriptions (id → owner)."""

    account: str
    subscriptions: dict[str, str]
    stream: Stream | None = None
    thread: threading.Thread | None = None
    lost: list[str] = field(default_factory=list)


def _person(owner: str, account: str) -> Person:
    # the row names the account: a person from the directory is not in the configured
    # settings, and the subscription is all that is asked
    return Person(owner, owner, "UTC", WorkingHours({}), account=account)


class Streamer:
    """Holds the streaming connections of ``cadence serve``."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cadence-stream", daemon=True)
        self._mutex = threading.Lock()  # guards what follows
        #: subscription id → the connection holding it
        self._held: dict[str, Connection] = {}
        self._connections: set[Connection] = set()
        #: connections that ended with subscriptions lost, for the looking thread
        self._ended: list[Connection] = []
        #: account → when its next connection may be opened (monotonic)
        self._pause: dict[str, float] = {}
        #: per account: the calendar that subscribes again (one session, one login)
        self._calendars: dict[str, Any] = {}
        #: owner → when its streaming subscription was last made again (monotonic)
        self._remade: dict[str, float] = {}
        #: connections refused for good, with why, for the looking thread
        self._refusals: list[tuple[Connection, str]] = []
        #: connections the server now holds, whose subscriptions the looking thread
        #: keeps alive in the store
        self._held_open: list[Connection] = []
        #: the looking thread's store, open from its first look until it ends (an SQLite
        #: connection serves the thread that opened it only)
        self._store: Store | None = None

    @property
    def settings(self) -> Settings:
        settings: Settings = self.side.service.settings
        return settings

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Look at the store now (an upkeep made subscriptions)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._mutex:
            held = list(self._connections)
        for conn in held:
            if conn.stream is not None:
                conn.stream.close()
        for conn in held:
            if conn.thread is not None:
                conn.thread.join(10)
        for calendar in self._calendars.values():
            calendar.close()
        self._calendars.clear()

    def connections(self) -> int:
        with self._mutex:
            return len(self._connections)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.look()
                except Exception:  # the next look, or the tick's safety net, covers it
                    log.exception("push: holding the Exchange streaming connections failed")
                    self._close_store()  # opened afresh: its connection may be what broke
                self._wake.wait(LOOK)
                self._wake.clear()
        finally:
            self._close_store()

    def _rows(self) -> PushRows:
        if self._store is None:
            self._store = Store(self.settings.store_at)
        return PushRows(self._store)

    def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def _connect(self, account: str) -> Any:
        """A calendar of ``account`` with an EWS connection of its own."""
        settings = self.settings
        ctx = connectors.Context(
            name=account,
            account=settings.accounts[account],
            settings=settings,
            people=[p for p in settings.people.values() if p.account == account],
            retry=RetryPolicy.none(),  # a failed connection is simply opened again
            log=logging.getLogger(f"cadence.connector.{account}"),
        )
        calendar, mailer = metrics.instrument(connectors.connect(ctx), "exchange")
        mailer.close()
        return calendar

    def look(self) -> list[Connection]:
        """Leave refused connections' calendars to the tick; make again what connections
        lost; open connections for the streaming subscriptions none holds; return the
        connections opened. Runs in the looking thread, whose store it uses."""
        rows = self._rows()
        with self._mutex:
            ended, self._ended = self._ended, []
            refusals, self._refusals = self._refusals, []
            held, self._held_open = self._held_open, []
        for conn, reason in refusals:
            self._refused(rows, conn, reason)
        for conn in ended:
            self._remake(rows, conn)
        self._alive(rows, held)
        return self._open(rows)

    def _alive(self, rows: PushRows, held: list[Connection]) -> None:
        """Keep alive the subscriptions of connections the server holds, for as long as
        one may last (it is opened again before they expire)."""
        now = datetime.now(UTC)
        with self.side.lock:
            for conn in held:
                for subscription, owner in conn.subscriptions.items():
                    rows.pulled(owner, subscription, pulls.STREAM, now + pulls.LIFETIME, now)

    def _remake(self, rows: PushRows, conn: Connection) -> None:
        """Subscribe again the calendars whose subscriptions ``conn`` lost, then have
        them read (they may have changed unseen)."""
        # read once: subscribing one calendar again rewrites its own row only
        kept = rows.all()
        for subscription in dict.fromkeys(conn.lost):  # a loss told twice is made once
            owner = conn.subscriptions[subscription]
            row = kept.get(owner)
            if row is None or row.channel.id != subscription:
                continue  # replaced or dropped meanwhile
            log.info("push: the streaming subscription of %s is gone: made again", owner)
            try:
                if conn.account not in self._calendars:
                    self._calendars[conn.account] = self._connect(conn.account)
                calendar = self._calendars[conn.account]
            except CadenceError as exc:
                log.info("push: the connection of %s: %s", owner, exc)
                continue
            now = datetime.now(UTC)
            again = time.monotonic() - self._remade.get(owner, -AGAIN) < AGAIN
            self._remade[owner] = time.monotonic()
            note = f"{pulls.NO_STREAMING}: lost again within {AGAIN:.0f} s" if again else None
            with self.side.lock:
                problem = pulls.subscribe(
                    rows, _person(owner, conn.account), calendar, row, now, not again, note
                )
            self.side.reactor.put(owner, "missed" if problem is None else "changed")
        self.side.gauge(rows)

    def _open(self, rows: PushRows) -> list[Connection]:
        settings = self.settings
        assert settings.push is not None
        free: dict[str, list[tuple[str, str]]] = {}
        # not in the middle of an upkeep: the subscriptions it makes are grouped whole
        with self.side.lock, self._mutex:
            for owner, row in sorted(rows.all().items()):
                channel = row.channel
                if channel.provider not in PULLED or not pulls.streamed(row):
                    continue
                if row.state not in ("active", "missed") or channel.id in self._held:
                    continue
                if channel.address not in settings.accounts:
                    continue  # the account is gone: the next upkeep drops the row
                if time.monotonic() < self._pause.get(channel.address, 0.0):
                    continue
                free.setdefault(channel.address, []).append((channel.id, owner))
        opened: list[Connection] = []
        for account, subs in free.items():
            size = settings.push.stream_group
            for group in (subs[i : i + size] for i in range(0, len(subs), size)):
                conn = Connection(account, dict(group))
                self._start(conn)
                opened.append(conn)
        return opened

    def _start(self, conn: Connection) -> None:
        with self._mutex:
            for subscription in conn.subscriptions:
                self._held[subscription] = conn
            self._connections.add(conn)
        conn.thread = threading.Thread(
            target=self._hold, args=(conn,), name="cadence-stream-connection", daemon=True
        )
        conn.thread.start()

    def _hold(self, conn: Connection) -> None:
        """Hold one connection until the server closes it; queue what changed."""
        gauge = self.side.service.metrics.push_stream_connections
        gauge.inc()
        calendar: Any = None
        result = "closed"
        try:
            assert self.settings.push is not None
            calendar = self._connect(conn.account)
            if not isinstance(calendar, Streams):
                raise PermanentError(f"the calendars of {conn.account} do not stream")
            anchor = _person(next(iter(conn.subscriptions.values())), conn.account)
            conn.stream = calendar.stream(
                anchor, list(conn.subscriptions), self.settings.push.stream_timeout
            )
            if not self._stop.is_set():
                for subscription, what in conn.stream:
                    owner = conn.subscriptions.get(subscription)
                    if what == OPEN:
                        with self._mutex:
                            self._held_open.append(conn)
                        self._wake.set()
                    elif owner is None:
                        continue
                    elif what == "lost":
                        conn.lost.append(subscription)
                        result = "lost"
                    else:
                        self.side.reactor.put(owner)
            if self._stop.is_set():
                result = "stopped"
        except CadenceError as exc:
            result = "failed"
            log.info("push: a streaming connection of %s: %s", conn.account, exc)
            with self._mutex:
                self._pause[conn.account] = time.monotonic() + RETRY
            if isinstance(exc, PermanentError):
                with self._mutex:  # marked by the looking thread, woken below
                    self._refusals.append((conn, str(exc)))
        except Exception:
            result = "failed"
            log.exception("push: a streaming connection of %s failed", conn.account)
        finally:
            gauge.dec()
            if calendar is not None:
                calendar.close()
            with self._mutex:
                for subscription in conn.subscriptions:
                    if self._held.get(subscription) is conn:
                        del self._held[subscription]
                self._connections.discard(conn)
                if conn.lost:
                    self._ended.append(conn)
            self.side.service.metrics.push_streams.labels(result).inc()
            self._wake.set()  # opened again at once

    def _refused(self, rows: PushRows, conn: Connection, reason: str) -> None:
        """Leave the calendars of a refused connection to the tick and the next upkeep."""
        now = datetime.now(UTC)
        with self.side.lock:
            kept = rows.all()
            for subscription, owner in conn.subscriptions.items():
                row = kept.get(owner)
                if row is not None and row.channel.id == subscription:
                    rows.mark(owner, "failed", now, reason[:500])
        self.side.gauge(rows)
