"""Pieces every provider needs alike, kept once here rather than copied into each.

Interval merging, which the rules need too, lives with Interval in ``agent.core.model``;
raw MIME building lives in ``agent.formats.mime``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

from agent.connectors.base import ensure_own
from agent.core.errors import PermanentError
from agent.core.model import Channel, Event, Interval, Person


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
