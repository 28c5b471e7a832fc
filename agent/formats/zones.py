"""Time zones a calendar defines itself (VTIMEZONE): read only when their rules are
yearly, and each calendar's own.

icalendar turns an unknown VTIMEZONE into a dateutil zone whose every offset lookup walks
the zone's rules from their start: a rule that repeats each second, minute or day (which
no real zone has) makes a single lookup run for hours, and with it the tick. Such a zone
is refused here, before it is made, so the calendar is reported as unreadable instead.

icalendar also keeps the zones calendars define in one cache for the process, by TZID,
and keeps the first: a second calendar defining a zone of the same name read its times
in the first one's offsets. Outlook names every zone it exports from custom settings
"Customized Time Zone", so the clash is not rare. :func:`parse` forgets the zones earlier
calendars defined before it reads one; zones are kept by their whole text instead, so
the same definition read again is not made again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import tzinfo
from typing import Any

import icalendar
from icalendar.timezone import tzp
from icalendar.timezone.zoneinfo import ZONEINFO

from agent.formats.recurrence import as_list

#: zones made from calendars' definitions, by their text; the oldest are let go
KEPT = 256


class CheckedZones(ZONEINFO):
    """icalendar's zoneinfo provider, with a calendar's own zones checked first and
    kept by their definition."""

    def __init__(self) -> None:
        super().__init__()
        self._made: OrderedDict[bytes, tzinfo] = OrderedDict()
        self._lock = threading.Lock()

    # icalendar's own ZONEINFO takes the component, not what its abstract base declares
    def create_timezone(self, tz: Any) -> tzinfo:  # type: ignore[override]
        key = tz.to_ical()
        with self._lock:
            if key in self._made:
                self._made.move_to_end(key)
                return self._made[key]
        check(tz)
        made: tzinfo = super().create_timezone(tz)
        with self._lock:
            self._made[key] = made
            while len(self._made) > KEPT:
                self._made.popitem(last=False)
        return made


def check(tz: Any) -> None:
    """Raise ValueError unless every rule of the VTIMEZONE ``tz`` repeats yearly."""
    for sub in tz.subcomponents:
        for rule in as_list(sub.get("RRULE")):
            freq = [str(f).upper() for f in rule.get("FREQ", [])]
            interval = [int(i) for i in rule.get("INTERVAL", [1])]
            if freq != ["YEARLY"] or interval != [1]:
                text = rule.to_ical().decode("utf-8", "replace")
                raise ValueError(
                    f"time zone {tz.get('TZID')!s:.80}: a rule of {text:.120} "
                    "(only yearly rules are read)"
                )


_PROVIDER = CheckedZones()
#: one calendar read at a time: the zones icalendar resolves TZIDs to are process-wide
_READING = threading.Lock()


def install() -> None:
    """Have icalendar make a calendar's own zones through ``CheckedZones``."""
    tzp.use(_PROVIDER)


def parse(text: str | bytes) -> Any:
    """``icalendar.Calendar.from_ical`` with only this calendar's own zones known by
    name, besides the IANA and Windows ones (icalendar resolves a property's TZID while
    it parses, so the lock need not outlast the parse)."""
    with _READING:
        install()  # forgets the zones of calendars read before
        return icalendar.Calendar.from_ical(text)
