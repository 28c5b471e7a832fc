"""The ``Calendar`` of one CalDAV account, put together from its capabilities."""

from __future__ import annotations

from typing import Literal

from agent.connectors.caldav.busy import Busy
from agent.connectors.caldav.events import OwnEvents
from agent.connectors.caldav.sync import Sync
from agent.core.model import Changes, Interval, Person, SyncToken


class CalDAVCalendar(Sync, Busy, OwnEvents):
    """The ``Calendar`` of one CalDAV account.

    Cadence mails the iTIP invitations itself (``sends_invitations`` is False). The
    tick takes busy time from the events it synced (``busy_from_sync``), not from the
    server's free-busy, so that one tick has one source of busy time; ``busy`` itself
    still asks the server, for callers without a synced store.
    """

    busy_from_sync: Literal[True] = True

    def changes(self, person: Person, since: SyncToken | None, window: Interval) -> Changes:
        """Return the person's events in ``window``, or what changed since ``since``;
        attendees' answers read from the mailbox are recorded first (see ``replies``),
        so the same sync sees them."""
        if self.replies is not None:
            self.replies.collect(self)
        return super().changes(person, since, window)
