"""Busy time: one ``free-busy-query`` REPORT per calendar, or the expanded events where a
server refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from agent.connectors.base import Busy as BusyTimes
from agent.connectors.caldav.client import CALDAV, Refused, Transport
from agent.connectors.caldav.ics import (
    stamp,
    widen_to_local_days,
)
from agent.core.errors import PermanentError
from agent.core.model import (
    Interval,
    Person,
    merge,
)
from agent.formats import zones


class Busy(Transport):
    """The ``busy`` of the Calendar protocol."""

    def busy(self, people: Sequence[Person], window: Interval) -> BusyTimes:
        """Return busy intervals per email: one free-busy-query per calendar.

        CalDAV has no batched free/busy across collections (the RFC 6638 outbox POST
        needs scheduling support and sees only the server's own users), so each
        calendar costs one REPORT. Servers place all-day events on UTC days in their
        reply (RFC 4791 leaves floating values to the server); a period that starts or
        ends at 00:00 UTC is therefore widened to the owner's local midnight, so an
        all-day absence blocks the whole local day.

        A calendar that answers with a refusal of its own (gone, not shared) fails for
        its owner alone; a transient error (the server down) is raised for everyone.
        """
        result = BusyTimes()
        for person in people:
            try:
                result[person.email] = self._busy_of(person, window)
            except PermanentError as exc:
                result.fail(person.email, str(exc))
        return result

    def _busy_of(self, person: Person, window: Interval) -> list[Interval]:
        url = self.calendar_url(person)
        periods = None
        if (url, "free-busy-query") not in self._refused:
            periods = self._freebusy(url, window)
            if periods is not None:
                periods = [widen_to_local_days(p, person, window) for p in periods]
        if periods is None:
            periods = self._busy_from_events(person, url, window)
        return merge(periods)

    def _freebusy(self, url: str, window: Interval) -> list[Interval] | None:
        body = (
            f'<C:free-busy-query xmlns:C="{CALDAV}">'
            f'<C:time-range start="{stamp(window.start)}" end="{stamp(window.end)}"/>'
            "</C:free-busy-query>"
        )
        try:
            response = self._report(url, body, 1, accept=(400, 403, 405, 415, 501))
            refused = response.status >= 400
        except Refused:
            refused = True
        if refused:
            self.log.info("%s refuses free-busy-query: computing busy time from events", url)
            self._refused.add((url, "free-busy-query"))
            return None
        cal = zones.parse(response.raw)
        periods: list[Interval] = []
        for fb in cal.walk("VFREEBUSY"):
            values = fb.get("FREEBUSY", [])
            for prop in values if isinstance(values, list) else [values]:
                if str(prop.params.get("FBTYPE", "BUSY")).upper() == "FREE":
                    continue
                for start, end_or_duration in prop.dt if isinstance(prop.dt, list) else [prop.dt]:
                    end = (
                        start + end_or_duration
                        if isinstance(end_or_duration, timedelta)
                        else end_or_duration
                    )
                    periods.append(Interval(start, end))
        return periods

    def _busy_from_events(self, person: Person, url: str, window: Interval) -> list[Interval]:
        periods: list[Interval] = []
        for obj in self._query(url, window):
            found, _ = self._expand(person, obj, window)
            periods.extend(
                Interval(max(e.start, window.start), min(e.end, window.end))
                for e in found
                if e.blocks_time and e.end > e.start
            )
        return periods
