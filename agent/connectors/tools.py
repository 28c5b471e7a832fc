"""Pieces every provider needs alike, kept once here rather than copied into each.

Interval merging, which the rules need too, lives with Interval in ``agent.core.model``;
raw MIME building lives in ``agent.formats.mime``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

from agent.connectors.base import ensure_own
from agent.core.errors import PermanentError
from agent.core.model import Channel, Event, Interval, Person
from agent.core.timestamps import to_store


def pieces(window: Interval, size: timedelta) -> Iterator[Interval]:
    """Cut ``window`` into consecutive pieces of at most ``size``: the longest range a
    provider's free/busy call accepts."""
    start = window.start
    while start < window.end:
        end = min(window.end, start + size)
        yield Interval(start, end)
        start = end


def live_first(events: list[Event]) -> Event | None:
    """Return the booking's live event, else a cancelled one, else None: a booking
    cancelled and made again leaves both on the calendar, under the same tag."""
    events.sort(key=lambda e: e.cancelled)
    return events[0] if events else None


def ensure_organizer(person: Person, event: Event) -> None:
    """Refuse to change an event unless it is the agent's own, on the calendar of the
    person who organizes it: an attendee's copy would only diverge from the organizer's.

    Raise PermanentError otherwise.
    """
    ensure_own(event)
    if event.organizer and event.organizer.lower() != person.email.lower():
        raise PermanentError(
            f"refusing to change event {event.id!r} on {person.email}: "
            f"only its organizer {event.organizer} can"
        )


#: How far back a reply reader looks: replies to a recap come within days of it.
REPLY_WINDOW = timedelta(days=30)
#: After the first listing, only what arrived since the newest message seen, less this
#: much, for mail moved into the inbox late (from Junk, or by a rule) that keeps the
#: time it was first received.
REPLY_SLACK = timedelta(days=1)


class InboxMarks:
    """Per mailbox, what a reply reader that lists an inbox by arrival time has returned:
    the ids of those messages, and the newest arrival seen (the high-water mark, kept in
    the store through ``marks``/``resume`` so that a restart does not read it all again)."""

    def __init__(self, mailboxes: Iterable[str]) -> None:
        self.mailboxes = sorted({m.lower() for m in mailboxes})
        self.seen: dict[str, set[str]] = {}
        self.newest: dict[str, datetime] = {}

    def marks(self) -> dict[str, str]:
        return {box: to_store(when) for box, when in self.newest.items()}

    def resume(self, marks: Mapping[str, str], read: Mapping[str, set[str]]) -> None:
        for box, mark in marks.items():
            if box in self.mailboxes and box not in self.newest:
                with contextlib.suppress(ValueError):
                    when = datetime.fromisoformat(mark)
                    self.newest[box] = when if when.tzinfo else when.replace(tzinfo=UTC)
                    self.seen.setdefault(box, set()).update(read.get(box, ()))

    def since(self, box: str, now: datetime) -> datetime:
        """Where the next listing of ``box`` starts."""
        floor = now - REPLY_WINDOW
        newest = self.newest.get(box)
        return max(floor, newest - REPLY_SLACK) if newest else floor

    def keep(self, listed: Mapping[str, tuple[list[str], datetime | None]]) -> None:
        """Remember what one call listed, once every inbox was read: a call that fails
        returns nothing, so the next must read its messages again (ids past the window
        are forgotten)."""
        for box, (ids, newest) in listed.items():
            self.seen[box] = set(ids)
            if newest is not None:
                old = self.newest.get(box)
                self.newest[box] = newest if old is None or newest > old else old


def read_before(refs: Iterable[str], scheme: str) -> dict[str, set[str]]:
    """Per mailbox (lower case), the ids in the refs ``scheme:mailbox/id`` the store keeps
    of replies read before: a restarted reader lists a day back from its mark, and what
    it read then need not be fetched again."""
    out: dict[str, set[str]] = {}
    for ref in refs:
        if ref.startswith(scheme + ":"):
            box, _, ident = ref[len(scheme) + 1 :].partition("/")
            if ident:
                out.setdefault(box.lower(), set()).add(ident)
    return out


class InboxReader:
    """The part of a reply reader that lists inboxes by arrival time (Graph, EWS): which
    inboxes, how far each was read, whose mail may be a reply, what is fetched whole."""

    #: the first part of the refs of the messages it returns (``scheme:mailbox/id``)
    scheme: str
    inboxes: InboxMarks
    #: whose mail may be a reply (the people of the relationships); None: anyone's
    senders: set[str] | None
    max_size: int | None
    clock: Callable[[], datetime]

    def read_inboxes(
        self, mailboxes: Iterable[str], senders: Iterable[str] | None, max_size: int | None
    ) -> None:
        self.inboxes = InboxMarks(mailboxes)
        self.senders = None if senders is None else {s.lower() for s in senders}
        self.max_size = max_size
        self.clock = lambda: datetime.now(UTC)

    def marks(self) -> dict[str, str]:
        return self.inboxes.marks()

    def resume(self, marks: Mapping[str, str], read: Iterable[str] = ()) -> None:
        self.inboxes.resume(marks, read_before(read, self.scheme))

    def ref(self, box: str, ident: str) -> str:
        return f"{self.scheme}:{box}/{ident}"

    def whole(self, size: int | None) -> bool:
        """Whether a message of ``size`` bytes is fetched whole, not by its header."""
        return self.max_size is None or size is None or size <= self.max_size


#: the header fields a reader keeps of a message too large to fetch whole: enough to
#: match it to a recap and judge its sender
HEADERS = frozenset(
    {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "authentication-results",
    }
)


def header_block(fields: Iterable[tuple[object, object]]) -> bytes:
    """The :data:`HEADERS` among ``fields`` (name, value) as the header of an RFC 5322
    message, in the order given (a provider lists the receiving server's own first)."""
    lines = [
        f"{name}: {value}".replace("\r", " ").replace("\n", " ")
        for name, value in fields
        if str(name or "").lower() in HEADERS
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "replace")


class PushBy:
    """The ``Watches`` methods of a calendar, carried out by its provider's push module
    (``watch``, ``renew`` and ``unwatch`` functions that take the provider's client)."""

    push_module: ModuleType

    def push_client(self) -> Any:
        raise NotImplementedError

    @property
    def push_lifetime(self) -> timedelta:
        lifetime: timedelta = self.push_module.LIFETIME
        return lifetime

    def watch(self, person: Person, address: str, secret: str, until: datetime) -> Channel:
        made: Channel = self.push_module.watch(self.push_client(), person, address, secret, until)
        return made

    def renew(
        self, person: Person, channel: Channel, address: str, secret: str, until: datetime
    ) -> Channel:
        client = self.push_client()
        made: Channel = self.push_module.renew(client, person, channel, address, secret, until)
        return made

    def unwatch(self, person: Person, channel: Channel) -> None:
        self.push_module.unwatch(self.push_client(), person, channel)
