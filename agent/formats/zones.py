"""Time zones a calendar defines itself (VTIMEZONE), read only when their rules are yearly.

icalendar turns an unknown VTIMEZONE into a dateutil zone whose every offset lookup walks
the zone's rules from their start: a rule that repeats each second, minute or day (which
no real zone has) makes a single lookup run for hours, and with it the tick. Such a zone
is refused here, before it is made, so the calendar is reported as unreadable instead.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from icalendar.timezone import tzp
from icalendar.timezone.zoneinfo import ZONEINFO

from agent.formats.recurrence import as_list


class CheckedZones(ZONEINFO):
    """icalendar's zoneinfo provider, with a calendar's own zones checked first."""

    def _create_timezone(self, tz: Any) -> tzinfo:
        check(tz)
        made: tzinfo = super()._create_timezone(tz)
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


def install() -> None:
    """Have icalendar make a calendar's own zones through ``CheckedZones``."""
    tzp.use(CheckedZones())
