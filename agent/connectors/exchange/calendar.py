"""The Calendar protocol on EWS: a calendar view for changes, GetUserAvailability for
busy time, and the agent's own meetings found by their tag.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import Any, Literal

from exchangelib import (
    Attendee,
    CalendarItem,
    EWSTimeZone,
    Mailbox,
)
from exchangelib import errors as ews_errors

from agent.connectors.base import Busy
from agent.connectors.exchange.client import Ews, check, log, translate
from agent.connectors.exchange.items import (
    FIELDS,
    aware,
    decode_cursor,
    diff,
    encode_cursor,
    ews_time,
    ews_zone,
    to_event,
)
from agent.connectors.exchange.notify import PullSubscriptions
from agent.connectors.exchange.stream import StreamingSubscriptions
from agent.connectors.tools import ensure_organizer, live_first, pieces
from agent.core.errors import PermanentError
from agent.core.model import Changes, Event, EventDraft, Interval, Person, Skipped, SyncToken, merge

MAX_MAILBOXES = 100  # GetUserAvailability mailboxes per request
MAX_PERIOD = timedelta(days=42)  # GetUserAvailability time window (the server default)
#: A full sync covers this much beyond the requested window, so the cursor stays valid
#: while the window slides forward; past it the view is re-anchored with a full sync.
WINDOW_SLACK = timedelta(days=30)
VIEW_LIMIT = 1000  # MaxEntriesReturned of a calendar view: Exchange's default find limit
MAX_PARTS = 64
PARTS = "#parts"  # the cursor entry that says in how many pieces the view was read
TOO_MANY = re.compile(r"ErrorExceededFindCountLimit|ErrorCalendarViewRangeTooBig")
BUSY = {"Busy", "Tentative", "OOF"}


class ExchangeCalendar(PullSubscriptions, StreamingSubscriptions):
    """The Calendar protocol on EWS, and pull and streaming notifications of its calendars."""

    sends_invitations: Literal[True] = True

    def __init__(self, ews: Ews, people: Sequence[Person] = ()) -> None:
        self.ews = ews
        self.people = {p.email.lower(): p for p in people}

    def close(self) -> None:
        self.ews.close()

    # -- sync

    def changes(self, person: Person, since: SyncToken | None, window: Interval) -> Changes:
        anchor: Interval | None = None
        before: dict[str, str] = {}
        if since:
            anchor, before = decode_cursor(since)
            if window.end > anchor.end or window.start < anchor.start:
                log.info("re-anchoring the calendar view of %s", person.email)
                anchor, before = None, {}
        full = anchor is None
        if anchor is None:
            anchor = Interval(window.start, window.end + WINDOW_SLACK)
        span = anchor
        folder = self.ews.folder(person.email)
        parts = max(1, int(before.pop(PARTS, "1"))) if before else 1

        def view(piece: Interval) -> dict[str, str]:
            qs = folder.view(
                start=ews_time(piece.start), end=ews_time(piece.end), max_items=VIEW_LIMIT
            )
            return {str(i.id): str(i.changekey) for i in check(qs.only("id", "changekey"), "view")}

        # Exchange answers at most 1000 items per FindItem (EWSFindCountLimit) and a
        # calendar view cannot page: a busy calendar is read in 2, 4, 8 ... pieces, and
        # the cursor remembers how many it took.
        while True:
            size = (span.end - span.start) / parts
            pieces = [
                Interval(
                    span.start + size * i,
                    span.end if i == parts - 1 else span.start + size * (i + 1),
                )
                for i in range(parts)
            ]
            try:
                now: dict[str, str] = {}
                for piece in pieces:
                    now.update(
                        self.ews.call(f"calendar view of {person.email}", partial(view, piece))
                    )
                break
            except PermanentError as exc:
                if not TOO_MANY.search(str(exc)) or parts >= MAX_PARTS:
                    raise
                parts *= 2
        changed, removed = diff(before, now)
        events, skipped = self._fetch(person, [(i, now[i]) for i in changed])
        return Changes(
            cursor=encode_cursor(anchor, {**now, PARTS: str(parts)} if parts > 1 else now),
            events=tuple(events),
            removed=() if full else tuple(removed),
            full=full,
            skipped=tuple(skipped),
        )

    def _fetch(
        self, person: Person, ids: Sequence[tuple[str, str]]
    ) -> tuple[list[Event], list[Skipped]]:
        """GetItem for ``ids``; an item that cannot be read becomes a Skipped."""
        if not ids:
            return [], []
        acc = self.ews.mailbox(person.email)
        folder = self.ews.folder(person.email)
        items = self.ews.call(
            f"items of {person.email}",
            lambda: list(acc.fetch(ids=ids, folder=folder, only_fields=FIELDS)),
        )
        events: list[Event] = []
        skipped: list[Skipped] = []
        for (ref, _), item in zip(ids, items, strict=True):
            if isinstance(item, ews_errors.ErrorItemNotFound):
                continue  # deleted between the view and the fetch: the next view shows it gone
            if isinstance(item, Exception):
                skipped.append(Skipped(person.email, ref, f"{type(item).__name__}: {item}"))
                continue
            try:
                events.append(to_event(person, item))
            except (AttributeError, TypeError, ValueError) as exc:
                skipped.append(Skipped(person.email, ref, f"{type(exc).__name__}: {exc}"))
        return events, skipped

    # -- free/busy

    def busy(self, people: Sequence[Person], window: Interval) -> Busy:
        """Busy intervals from GetUserAvailability: 100 mailboxes and 42 days per call;
        a mailbox whose own response is an error fails alone."""
        result = Busy({p.email.lower(): [] for p in people})
        emails = list(result)
        if not emails:
            return Busy()
        protocol = self.ews.protocol
        utc = EWSTimeZone("UTC")
        for i in range(0, len(emails), MAX_MAILBOXES):
            group = emails[i : i + MAX_MAILBOXES]
            for piece in pieces(window, MAX_PERIOD):

                def ask(group: list[str] = group, piece: Interval = piece) -> list[Any]:
                    return list(
                        protocol.get_free_busy_info(
                            accounts=[(e, "Required", False) for e in group],
                            start=ews_time(piece.start),
                            end=ews_time(piece.end),
                            merged_free_busy_interval=15,
                            requested_view="Detailed",
                        )
                    )

                views = self.ews.call(f"free/busy of {len(group)} mailboxes", ask)
                for who, view in zip(group, views, strict=True):
                    if who in result.failed:
                        continue
                    if isinstance(view, Exception):
                        result.fail(who, str(translate(f"free/busy of {who}", view)))
                        continue
                    for ev in view.calendar_events or []:
                        if ev.busy_type in BUSY:
                            # EWS answers in the request's time zone, without an offset
                            result[who].append(Interval(aware(ev.start, utc), aware(ev.end, utc)))
        for who in list(result):
            result[who] = merge(result[who])
        return result

    # -- the agent's own events

    def _tagged(self, person: Person, key: str) -> list[tuple[str, str]]:
        """(id, change key) of the items tagged with ``key`` (one FindItem, no retry)."""
        if not re.fullmatch(r"[0-9A-Za-z_-]{1,200}", key):
            raise PermanentError(f"not a booking key: {key!r}")
        folder = self.ews.folder(person.email)
        found = check(folder.filter(cadence_key=key).only("id", "changekey"), "find")
        return [(str(i.id), str(i.changekey)) for i in found]

    def find(self, person: Person, key: str) -> Event | None:
        ids = self.ews.call(f"booking {key} of {person.email}", lambda: self._tagged(person, key))
        events, _ = self._fetch(person, ids)
        return live_first(events)

    def create(self, draft: EventDraft) -> Event:
        existing = self.find(draft.organizer, draft.key)
        if existing is not None:
            return existing
        organizer = draft.organizer
        acc = self.ews.mailbox(organizer.email)
        zone = ews_zone(draft.timezone)
        body = f"{draft.description}\n\n[cadence:{draft.key}]".strip()
        item = CalendarItem(
            account=acc,
            folder=self.ews.folder(organizer.email),
            subject=draft.title,
            body=body,
            start=ews_time(draft.start, zone),
            end=ews_time(draft.end, zone),
            legacy_free_busy_status="Busy",
            required_attendees=[
                Attendee(
                    mailbox=Mailbox(email_address=p.email, name=p.name), response_type="Unknown"
                )
                for p in draft.attendees
                if p.email.lower() != organizer.email.lower()
            ],
            cadence_key=draft.key,
        )

        tries = 0

        def save() -> tuple[str, str]:
            # EWS has no idempotency token: a retry (after a timeout or a lost answer,
            # when the first CreateItem may have worked) looks for the tag first.
            nonlocal tries
            tries += 1
            if tries > 1:
                made = self._tagged(organizer, draft.key)
                if made:
                    return made[0]
            with self.ews.once():
                item.save(send_meeting_invitations="SendToAllAndSaveCopy")
            return str(item.id), str(item.changekey)

        ref = self.ews.call(f"create {draft.key} on {organizer.email}", save)
        events, _ = self._fetch(organizer, [ref])
        if not events:
            raise PermanentError(f"the new meeting {draft.key} could not be read back")
        return events[0]

    def move(self, person: Person, event: Event, to: Interval) -> Event:
        ensure_organizer(person, event)
        acc = self.ews.mailbox(person.email)
        folder = self.ews.folder(person.email)
        zone = ews_zone(person.timezone)

        def update() -> tuple[str, str]:
            [item] = check(
                acc.fetch(ids=[(event.id, None)], folder=folder, only_fields=("start", "end")),
                "get",
            )
            item.start = ews_time(to.start, zone)
            item.end = ews_time(to.end, zone)
            item.save(
                update_fields=["start", "end"],
                send_meeting_invitations="SendToAllAndSaveCopy",
            )
            return str(item.id), str(item.changekey)

        ref = self.ews.call(f"move {event.id} on {person.email}", update)
        events, _ = self._fetch(person, [ref])
        if not events:
            raise PermanentError(f"the moved meeting {event.id} could not be read back")
        moved = events[0]
        return replace(moved, sequence=max(moved.sequence, event.sequence + 1))

    def cancel(self, person: Person, event: Event) -> None:
        ensure_organizer(person, event)
        acc = self.ews.mailbox(person.email)

        def delete() -> None:
            results = acc.bulk_delete(
                ids=[(event.id, None)],
                delete_type="MoveToDeletedItems",
                send_meeting_cancellations="SendToAllAndSaveCopy",
            )
            for r in results:
                if isinstance(r, ews_errors.ErrorItemNotFound):
                    log.info("event %s on %s was already gone", event.id, person.email)
                elif isinstance(r, Exception):
                    raise r

        self.ews.call(f"cancel {event.id} on {person.email}", delete)
