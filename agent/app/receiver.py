"""The push receiver of ``cadence serve``: ``POST /push/google`` and ``/push/microsoft``.

A notification is answered at once. The receiver checks it against the channels it
knows (Google: the channel id, ``X-Goog-Channel-Token`` and ``X-Goog-Resource-ID``;
Graph: the subscription id and ``clientState``), and queues the calendar; a forged or
stale one is refused, counted, and does nothing else. The work happens after the answer,
in the reactor's thread: it waits ``push.debounce`` after a calendar's first notification,
so that a burst gives one sync, and hands the calendars to the service's reaction.

The receiver never touches the store: the service hands it the channels after each
upkeep (``known``). Only its own paths are served, bodies are small, and each source
address is rate-limited (the reverse proxy's ``X-Forwarded-For`` names the source when
the request comes from the loopback).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.core.model import Channel

log = logging.getLogger("cadence.push")

PREFIX = "/push/"
PROVIDERS = ("google", "microsoft")
#: the largest body accepted: a Graph batch of notifications is a few kilobytes
MAX_BODY = 64 * 1024
#: the Google resource states that say the calendar changed ("sync" opens a channel)
GOOGLE_CHANGED = ("exists", "not_exists")
#: Graph's lifecycle events, and what the reaction does about each
LIFECYCLE = {
    "reauthorizationRequired": "reauthorize",
    "subscriptionRemoved": "removed",
    "missed": "missed",
}

Answer = tuple[int, str, bytes]


@dataclass
class Pending:
    """One calendar waiting for its sync: when it was first named, and why."""

    first: float
    kinds: set[str] = field(default_factory=set)
    count: int = 0


class Reactor:
    """Gathers the notifications of each calendar for ``debounce`` seconds after the
    first, then hands every calendar that is due to ``act`` in one batch (in its own
    thread, one batch at a time)."""

    def __init__(
        self,
        debounce: float,
        act: Callable[[dict[str, Pending]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.debounce = debounce
        self.act = act
        self.clock = clock
        self.pending: dict[str, Pending] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="cadence-push", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def put(self, owner: str, kind: str = "changed") -> None:
        with self._cond:
            item = self.pending.get(owner)
            if item is None:
                item = self.pending[owner] = Pending(self.clock())
                self._cond.notify_all()
            item.kinds.add(kind)
            item.count += 1

    def _due(self) -> dict[str, Pending]:
        """Wait until some calendar's debounce has passed; take every one that has."""
        with self._cond:
            while not self._stopped:
                now = self.clock()
                due = {o: p for o, p in self.pending.items() if now - p.first >= self.debounce}
                if due:
                    for owner in due:
                        del self.pending[owner]
                    return due
                waits = [p.first + self.debounce - now for p in self.pending.values()]
                self._cond.wait(timeout=min(waits) if waits else None)
            return {}

    def _run(self) -> None:
        while True:
            batch = self._due()
            if not batch:
                return
            try:
                self.act(batch)
            except Exception:  # the next notification or the safety-net poll covers it
                log.exception("push: reacting to %s failed", ", ".join(sorted(batch)))


class _Sources:
    """A token bucket per source address, never waiting: over the rate is refused."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, source: str, now: float) -> bool:
        with self._lock:
            if len(self._buckets) > 10_000:  # forget idle sources rather than grow
                self._buckets = {s: b for s, b in self._buckets.items() if now - b[1] < 60}
            tokens, stamp = self._buckets.get(source, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            if tokens < 1:
                self._buckets[source] = (tokens, now)
                return False
            self._buckets[source] = (tokens - 1, now)
            return True


class Receiver:
    """Validates notifications and queues their calendars on the reactor."""

    def __init__(
        self,
        reactor: Reactor,
        rate: float,
        count: Callable[[str, str], None] = lambda provider, result: None,
    ) -> None:
        self.reactor = reactor
        self.count = count
        self._sources = _Sources(rate, max(1.0, rate * 5))
        self._channels: dict[str, Channel] = {}

    def known(self, channels: Iterable[Channel]) -> None:
        """Replace the channels notifications are checked against."""
        self._channels = {c.id: c for c in channels}

    @staticmethod
    def owns(path: str) -> bool:
        return path.split("?", 1)[0] in {PREFIX + p for p in PROVIDERS}

    def admit(
        self, path: str, peer: str, headers: Mapping[str, str], query: str = ""
    ) -> Answer | None:
        """Refuse a request before its body is read (too many from its source, too
        large), or None; ``headers`` have lower-case names.

        Graph's validation handshakes are not counted against their source: Cadence's
        own subscriptions cause them, as fast as it makes them (thousands in a first
        tick), and echoing the token costs no more than refusing it."""
        provider = path[len(PREFIX) :]
        handshake = provider == "microsoft" and "validationToken" in urllib.parse.parse_qs(query)
        if not handshake and not self._sources.allow(_source(peer, headers), time.monotonic()):
            self.count(provider, "limited")
            return 429, "text/plain", b"too many requests\n"
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            return 400, "text/plain", b"bad Content-Length\n"
        if length > MAX_BODY or length < 0:
            self.count(provider, "rejected")
            return 413, "text/plain", b"too large\n"
        return None

    def answer(self, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Answer one admitted notification on the receiver's paths."""
        if len(body) > MAX_BODY:
            return 413, "text/plain", b"too large\n"
        if path[len(PREFIX) :] == "google":
            return self.google(headers)
        return self.microsoft(urllib.parse.parse_qs(query), body)

    # --- Google ------------------------------------------------------------------------

    def google(self, headers: Mapping[str, str]) -> Answer:
        state = headers.get("x-goog-resource-state", "")
        channel = self._channels.get(headers.get("x-goog-channel-id", ""))
        if state == "sync" and channel is None:
            # Google says a channel is open before its events.watch call has returned,
            # so before the channel is known here: the message asks for nothing
            self.count("google", "ignored")
            return 200, "text/plain", b""
        valid = (
            channel is not None
            and channel.provider == "google"
            and hmac.compare_digest(headers.get("x-goog-channel-token", ""), channel.secret)
            and hmac.compare_digest(headers.get("x-goog-resource-id", ""), channel.resource_id)
        )
        if not valid or channel is None:
            self.count("google", "rejected")
            log.warning("push: refused a Google notification for an unknown channel or token")
            return 403, "text/plain", b"unknown channel\n"
        if state in GOOGLE_CHANGED:
            self.reactor.put(channel.owner)
            self.count("google", "accepted")
        else:  # "sync": the channel is open; nothing changed yet
            self.count("google", "ignored")
        return 200, "text/plain", b""

    # --- Microsoft Graph ---------------------------------------------------------------

    def microsoft(self, query: Mapping[str, list[str]], body: bytes) -> Answer:
        if "validationToken" in query:
            # the handshake of a new subscription: echo the token, as plain text, at once
            self.count("microsoft", "validation")
            return 200, "text/plain", query["validationToken"][0].encode()
        try:
            items = json.loads(body)["value"]
            if not isinstance(items, list):
                raise TypeError("value is not a list")
        except (ValueError, KeyError, TypeError):
            self.count("microsoft", "rejected")
            return 400, "text/plain", b"not a notification\n"
        accepted = 0
        for item in items:
            channel = self._graph(item)
            if channel is None:
                self.count("microsoft", "rejected")
                continue
            event = item.get("lifecycleEvent")
            self.reactor.put(channel.owner, LIFECYCLE.get(str(event), "changed"))
            self.count("microsoft", "lifecycle" if event else "accepted")
            accepted += 1
        if not accepted:
            log.warning("push: refused a Graph notification: unknown subscription or clientState")
            return 403, "text/plain", b"unknown subscription\n"
        return 202, "text/plain", b""

    def _graph(self, item: Any) -> Channel | None:
        if not isinstance(item, dict):
            return None
        channel = self._channels.get(str(item.get("subscriptionId", "")))
        state = item.get("clientState")
        if (
            channel is None
            or channel.provider != "microsoft"
            or not isinstance(state, str)
            or not hmac.compare_digest(state, channel.secret)
        ):
            return None
        return channel


def _source(peer: str, headers: Mapping[str, str]) -> str:
    """The sender's address: the proxy's X-Forwarded-For when the peer is the loopback."""
    forwarded = headers.get("x-forwarded-for")
    if forwarded and peer in ("127.0.0.1", "::1"):
        return forwarded.split(",")[-1].strip() or peer
    return peer
