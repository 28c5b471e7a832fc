"""Microsoft 365 through Microsoft Graph v1.0, authenticated with MSAL.

Two ways in:

- **organization**: client credentials (a secret from the environment variable named by
  ``client_secret_env``, or a certificate file) with application permissions, acting on
  the mailboxes of the people in the config;
- **single person**: the device-code flow (:func:`device_code_login`, run by
  ``cadence auth microsoft``), whose MSAL token cache is kept in a 0600 file and used
  silently afterwards.

What it calls, per mailbox ``/users/{email}``: ``calendarView/delta`` (the delta link is
replayed verbatim and kept in the cursor), ``events`` (create with ``transactionId``,
tagged with a single-value extended property and found by it), ``calendar/getSchedule``
(20 schedules per call, periods under 62 days, several calls in one ``$batch``),
``mailboxSettings`` and ``sendMail`` (base64 MIME, so Message-ID, In-Reply-To and
References survive: ``internetMessageHeaders`` only takes ``x-`` headers).

Replies to recaps (only when a program sets ``recap: {collect_replies: true}``, which
needs ``Mail.Read``: ``Mail.ReadBasic`` leaves out bodies, so no MIME): per employee
mailbox, ``mailFolders/inbox/messages`` received in the last 30 days (ids only), then
``messages/{id}/$value`` once for each id the mailer has not read before.

Tokens, HTTP and the translation of errors live in :mod:`agent.connectors.microsoft_graph`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any
from zoneinfo import ZoneInfo

from agent.connectors import Context
from agent.connectors.base import IncomingMail, ensure_own
from agent.connectors.microsoft_graph import (
    PREFER_UTC,
    Graph,
    delegated_scopes,
    device_code_login,
    login,
)
from agent.core.errors import CursorExpired, PermanentError
from agent.core.model import (
    Attendee,
    Changes,
    Event,
    EventDraft,
    Interval,
    OutgoingMail,
    PartStat,
    Person,
    SentMail,
    Skipped,
    Span,
    SyncToken,
    WorkingHours,
)
from agent.settings.config import MicrosoftAccount

try:  # the CLDR Windows → IANA table that ships with icalendar
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON
except ImportError:  # pragma: no cover - older icalendar
    WINDOWS_TO_OLSON = {}

log = logging.getLogger("cadence.microsoft")

#: The agent's tag on the events it creates (a GUID of its own, a case-sensitive name).
KEY_PROPERTY = "String {8e1a6c44-3f8e-4d7a-9c1b-5a2d0ce0a11e} Name CadenceKey"
#: PidLidAppointmentSequence, which Exchange raises when the organizer changes the time.
SEQUENCE_PROPERTY = "Integer {00062002-0000-0000-C000-000000000046} Id 0x8201"
#: transactionId = prefix + booking key; delta cannot $expand the tag, so changes() reads
#: the key back from here.
TRANSACTION_PREFIX = "cadence-"
#: The booking reference written into the body, the one part attendees' copies share.
REFERENCE = re.compile(r"\[cadence:([0-9A-Za-z_-]{8,64})\]")
#: The cursor of a colleague's calendar under a single person's sign-in: not read.
OTHERS_CALENDAR = "not-read:delegated"
MAX_SCHEDULES = 20
SCHEDULE_PERIOD = timedelta(days=61)  # getSchedule wants a period under 62 days
#: A full sync covers this much beyond the requested window, so that the delta link stays
#: valid as the window slides forward; past it the window is re-anchored.
WINDOW_SLACK = timedelta(days=30)
PAGE_SIZE = 1000  # Prefer: odata.maxpagesize; Graph caps it at what it allows
BUSY = {"busy", "tentative", "oof", "unknown"}
PARTSTAT = {
    "accepted": PartStat.ACCEPTED,
    "organizer": PartStat.ACCEPTED,
    "declined": PartStat.DECLINED,
    "tentativelyaccepted": PartStat.TENTATIVE,
}
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


# --- time ----------------------------------------------------------------------------


_IANA_TO_WINDOWS = {iana: win for win, iana in WINDOWS_TO_OLSON.items()}
try:  # tzlocal (an APScheduler dependency) maps every IANA zone, not only the main ones
    from tzlocal.windows_tz import tz_win

    _IANA_TO_WINDOWS.update(tz_win)
except ImportError:  # pragma: no cover
    pass


def zone_of(name: str) -> ZoneInfo:
    """Resolve a time zone name as Graph writes it (Windows, IANA or UTC)."""
    if name in ("UTC", "tzone://Microsoft/Utc", "Coordinated Universal Time"):
        return ZoneInfo("UTC")
    return ZoneInfo(WINDOWS_TO_OLSON.get(name, name))


def parse_dtz(value: Mapping[str, Any]) -> datetime:
    """A Graph dateTimeTimeZone as an aware UTC datetime."""
    naive = datetime.fromisoformat(str(value["dateTime"])[:26].rstrip("Z"))
    if naive.tzinfo is not None:
        return naive.astimezone(UTC)
    return naive.replace(tzinfo=zone_of(str(value.get("timeZone") or "UTC"))).astimezone(UTC)


def format_dtz(dt: datetime, zone: str) -> dict[str, str]:
    """Local wall time in ``zone`` under its Windows name, or UTC where there is none."""
    windows = _IANA_TO_WINDOWS.get(zone)
    if zone == "UTC" or windows is None:
        return {"dateTime": dt.astimezone(UTC).replace(tzinfo=None).isoformat(), "timeZone": "UTC"}
    local = dt.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    return {"dateTime": local.isoformat(), "timeZone": windows}


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pieces(window: Interval, size: timedelta) -> Iterator[Interval]:
    start = window.start
    while start < window.end:
        end = min(window.end, start + size)
        yield Interval(start, end)
        start = end


# --- calendar ------------------------------------------------------------------------


def _user(person_or_email: Person | str) -> str:
    email = person_or_email if isinstance(person_or_email, str) else person_or_email.email
    return "/users/" + urllib.parse.quote(email, safe="@")


def _key_filter(key: str) -> dict[str, str]:
    if not re.fullmatch(r"[0-9A-Za-z_-]{1,200}", key):
        raise PermanentError(f"not a booking key: {key!r}")
    return {
        "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{KEY_PROPERTY}' "
        f"and ep/value eq '{key}')",
        "$expand": _EXPAND,
    }


_EXPAND = (
    f"singleValueExtendedProperties($filter=id eq '{KEY_PROPERTY}' or id eq '{SEQUENCE_PROPERTY}')"
)


def _cursor(since: str) -> dict[str, str]:
    """Read a cursor written by changes(); raise CursorExpired for anything else."""
    try:
        value = json.loads(since)
        if (
            isinstance(value, dict)
            and str(value.get("link", "")).startswith("https://")
            and datetime.fromisoformat(str(value["end"])).tzinfo is not None
            and datetime.fromisoformat(str(value["start"])).tzinfo is not None
        ):
            return {k: str(v) for k, v in value.items()}
    except (ValueError, KeyError):
        pass
    raise CursorExpired(f"not a Microsoft Graph cursor: {since[:40]!r}")


def to_event(owner: Person, item: Mapping[str, Any]) -> Event:
    """Map one Graph event (or occurrence) onto an Event of ``owner``'s calendar."""
    if item.get("isAllDay"):
        first = date.fromisoformat(str(item["start"]["dateTime"])[:10])
        last = date.fromisoformat(str(item["end"]["dateTime"])[:10])
        start = datetime.combine(first, time(0), owner.zone)
        end = datetime.combine(max(last, first + timedelta(days=1)), time(0), owner.zone)
    else:
        start, end = parse_dtz(item["start"]), parse_dtz(item["end"])
    props = {
        str(p.get("id", "")).lower(): p.get("value")
        for p in item.get("singleValueExtendedProperties") or []
    }
    key = props.get(KEY_PROPERTY.lower())
    tx = item.get("transactionId") or ""
    if not key and isinstance(tx, str) and tx.startswith(TRANSACTION_PREFIX):
        key = tx[len(TRANSACTION_PREFIX) :]
    body = item.get("body") or {}
    if not key and not item.get("isOrganizer", True):
        # An invitation's copy carries neither tag nor transactionId, only the body: the
        # reference there lets both copies count as one meeting. Such a copy can never be
        # moved or cancelled by the agent (only the organizer's can), so it is safe.
        found = REFERENCE.search(str(body.get("content") or ""))
        key = found.group(1) if found else None
    sequence = int(props.get(SEQUENCE_PROPERTY.lower()) or 0)
    organizer = ((item.get("organizer") or {}).get("emailAddress") or {}).get("address")
    attendees = {}
    for a in item.get("attendees") or []:
        address = ((a.get("emailAddress") or {}).get("address") or "").lower()
        if address:
            response = str((a.get("status") or {}).get("response", "none")).lower()
            attendees[address] = Attendee(address, PARTSTAT.get(response, PartStat.NEEDS_ACTION))
    if not item.get("isOrganizer", True):
        # the owner's own answer lives in responseStatus on their copy
        response = str((item.get("responseStatus") or {}).get("response", "none")).lower()
        me = owner.email.lower()
        attendees[me] = Attendee(me, PARTSTAT.get(response, PartStat.NEEDS_ACTION))
    show_as = str(item.get("showAs") or "busy")
    return Event(
        owner=owner.email,
        id=str(item["id"]),
        title=str(item.get("subject") or ""),
        start=start,
        end=end,
        uid=str(item.get("iCalUId") or ""),
        all_day=bool(item.get("isAllDay")),
        cancelled=bool(item.get("isCancelled")),
        transparent=show_as in ("free", "workingElsewhere"),
        kind="outOfOffice" if show_as == "oof" else "default",
        organizer=organizer.lower() if organizer else None,
        attendees=tuple(attendees.values()),
        key=str(key) if key else None,
        sequence=sequence,
        description=str(body.get("content") or "") if body.get("contentType") == "text" else "",
        location=str((item.get("location") or {}).get("displayName") or ""),
    )


class MicrosoftCalendar:
    """The Calendar protocol on Microsoft Graph."""

    sends_invitations = True
    concurrent_writes = True  # one pooled session; the token is fetched under a lock

    def __init__(self, graph: Graph, people: Sequence[Person] = ()) -> None:
        self.graph = graph
        self.people = {p.email.lower(): p for p in people}
        self._providers: dict[str, list[str]] = {}

    def close(self) -> None:
        self.graph.close()

    # -- sync

    def changes(self, person: Person, since: SyncToken | None, window: Interval) -> Changes:
        signed_in = self.graph.signed_in_user()
        if signed_in is not None and person.email.lower() != signed_in:
            # A single person's sign-in reads only their own calendar: meetings with a
            # colleague are on it too, and the colleague's busy time comes from busy().
            return Changes(cursor=OTHERS_CALENDAR, full=since != OTHERS_CALENDAR)
        anchored: dict[str, str] | None = None
        if since:
            anchored = _cursor(since)
            if window.end > datetime.fromisoformat(anchored["end"]):
                log.info("re-anchoring the delta window of %s", person.email)
                anchored = None
        if anchored is None:
            end = window.end + WINDOW_SLACK
            url = f"{_user(person)}/calendarView/delta"
            params: dict[str, str] | None = {
                "startDateTime": _iso(window.start),
                "endDateTime": _iso(end),
            }
            span = {"start": window.start.isoformat(), "end": end.isoformat()}
        else:
            url, params = anchored["link"], None
            span = {"start": anchored["start"], "end": anchored["end"]}
        events: dict[str, Event] = {}
        removed: list[str] = []
        skipped: list[Skipped] = []
        prefer = f"{PREFER_UTC}, odata.maxpagesize={PAGE_SIZE}"
        while True:
            page = self.graph.send("GET", url, params=params, headers={"Prefer": prefer}).json()
            for item in page.get("value", []):
                ref = str(item.get("id", "?"))
                if "@removed" in item:
                    events.pop(ref, None)
                    removed.append(ref)
                    continue
                try:
                    events[ref] = to_event(person, item)
                except Exception as exc:  # one unreadable item never fails the sync
                    skipped.append(Skipped(person.email, ref, f"{type(exc).__name__}: {exc}"))
            if page.get("@odata.nextLink"):
                url, params = page["@odata.nextLink"], None
                continue
            link = page.get("@odata.deltaLink")
            if not link:
                raise PermanentError("Graph delta answered without nextLink or deltaLink")
            break
        cursor = json.dumps({"link": link, **span})
        return Changes(
            cursor=cursor,
            events=tuple(events.values()),
            removed=tuple(r for r in removed if r not in events),
            full=anchored is None,
            skipped=tuple(skipped),
        )

    # -- free/busy

    def busy(self, people: Sequence[Person], window: Interval) -> dict[str, list[Interval]]:
        """Busy intervals from getSchedule: 20 mailboxes per call, periods under 62 days."""
        result: dict[str, list[Interval]] = {p.email.lower(): [] for p in people}
        emails = list(result)
        if not emails:
            return {}
        calls: list[dict[str, Any]] = []
        # a single person asks from their own mailbox; an app from the group's first
        anchor = self.graph.signed_in_user()
        for i in range(0, len(emails), MAX_SCHEDULES):
            group = emails[i : i + MAX_SCHEDULES]
            for piece in _pieces(window, SCHEDULE_PERIOD):
                body = {
                    "schedules": group,
                    "startTime": {"dateTime": _iso(piece.start)[:-1], "timeZone": "UTC"},
                    "endTime": {"dateTime": _iso(piece.end)[:-1], "timeZone": "UTC"},
                    "availabilityViewInterval": 15,
                }
                calls.append(
                    {
                        "method": "POST",
                        "url": f"{_user(anchor or group[0])}/calendar/getSchedule",
                        "body": body,
                        "headers": {"Content-Type": "application/json", "Prefer": PREFER_UTC},
                    }
                )
        if len(calls) == 1:
            call = calls[0]
            answers = [self.graph.send("POST", str(call["url"]), json_body=call["body"]).json()]
        else:
            answers = self.graph.batch(calls)
        for answer in answers:
            for info in (answer or {}).get("value", []):
                who = str(info.get("scheduleId", "")).lower()
                if info.get("error"):
                    err = info["error"]
                    raise PermanentError(
                        f"getSchedule for {who}: {err.get('responseCode')} {err.get('message', '')}"
                    )
                for it in info.get("scheduleItems") or []:
                    if str(it.get("status", "busy")) in BUSY:
                        result.setdefault(who, []).append(
                            Interval(parse_dtz(it["start"]), parse_dtz(it["end"]))
                        )
        return {k: _merge(v) for k, v in result.items()}

    # -- the agent's own events

    def find(self, person: Person, key: str) -> Event | None:
        page = self.graph.send("GET", f"{_user(person)}/events", params=_key_filter(key)).json()
        found = [to_event(person, item) for item in page.get("value", [])]
        found.sort(key=lambda e: e.cancelled)
        return found[0] if found else None

    def create(self, draft: EventDraft) -> Event:
        organizer = draft.organizer
        existing = self.find(organizer, draft.key)
        if existing is not None:
            return existing
        body: dict[str, Any] = {
            "subject": draft.title,
            "body": {
                "contentType": "text",
                "content": f"{draft.description}\n\n[cadence:{draft.key}]",
            },
            "start": format_dtz(draft.start, draft.timezone),
            "end": format_dtz(draft.end, draft.timezone),
            "attendees": [
                {"emailAddress": {"address": p.email, "name": p.name}, "type": "required"}
                for p in draft.attendees
                if p.email.lower() != organizer.email.lower()
            ],
            "showAs": "busy",
            "allowNewTimeProposals": True,
            "transactionId": TRANSACTION_PREFIX + draft.key,
            "singleValueExtendedProperties": [{"id": KEY_PROPERTY, "value": draft.key}],
        }
        if draft.conference == "auto" and "teamsForBusiness" in self._online_providers(organizer):
            body["isOnlineMeeting"] = True
            body["onlineMeetingProvider"] = "teamsForBusiness"
        # A retried POST carries the same transactionId, so Graph does not make a second
        # event. What Graph answers to the repeat is not documented: the event itself, or
        # a conflict, after which the tag finds the event.
        try:
            item = self.graph.send("POST", f"{_user(organizer)}/events", json_body=body).json()
        except PermanentError as exc:
            if not re.search(r"\b409\b|duplicate|transactionid", str(exc), re.I):
                raise
            made = self.find(organizer, draft.key)
            if made is None:
                raise
            return made
        event = to_event(organizer, item)
        return event if event.key else replace(event, key=draft.key)

    def _online_providers(self, person: Person) -> list[str]:
        email = person.email.lower()
        if email not in self._providers:
            cal = self.graph.send(
                "GET",
                f"{_user(person)}/calendar",
                params={"$select": "allowedOnlineMeetingProviders"},
            ).json()
            self._providers[email] = list(cal.get("allowedOnlineMeetingProviders") or [])
        return self._providers[email]

    def move(self, person: Person, event: Event, to: Interval) -> Event:
        _ensure_organizer(person, event)
        zone = person.timezone
        body = {"start": format_dtz(to.start, zone), "end": format_dtz(to.end, zone)}
        path = f"{_user(person)}/events/{urllib.parse.quote(event.id, safe='')}"
        item = self.graph.send("PATCH", path, json_body=body).json()
        moved = to_event(person, item)
        # Exchange raises the appointment sequence on a time change; PATCH does not echo it.
        return replace(
            moved, key=moved.key or event.key, sequence=max(moved.sequence, event.sequence + 1)
        )

    def cancel(self, person: Person, event: Event) -> None:
        _ensure_organizer(person, event)
        path = f"{_user(person)}/events/{urllib.parse.quote(event.id, safe='')}"
        try:
            if event.attendees:
                comment = {"comment": "Cancelled by Cadence."}
                self.graph.send("POST", f"{path}/cancel", json_body=comment)
            else:
                self.graph.send("DELETE", path)
        except PermanentError as exc:
            if "ErrorItemNotFound" not in str(exc):
                raise
            log.info("event %s on %s was already gone", event.id, person.email)

    # -- mailbox settings

    def mailbox_settings(self, person: Person) -> tuple[str, WorkingHours]:
        """The person's time zone (IANA) and working hours as set in Outlook."""
        data = self.graph.send("GET", f"{_user(person)}/mailboxSettings").json()
        hours = data.get("workingHours") or {}
        zone_name = (hours.get("timeZone") or {}).get("name") or data.get("timeZone") or "UTC"
        try:
            zone = str(zone_of(zone_name))
        except (ValueError, KeyError) as exc:
            raise PermanentError(f"unknown time zone {zone_name!r} for {person.email}") from exc
        span = Span(_clock(hours.get("startTime", "09:00")), _clock(hours.get("endTime", "17:00")))
        days = {DAYS.index(d): (span,) for d in hours.get("daysOfWeek") or [] if d in DAYS}
        return zone, WorkingHours(days)


def _ensure_organizer(person: Person, event: Event) -> None:
    """Only the agent's own events, on the calendar of the person who organizes them."""
    ensure_own(event)
    if event.organizer and event.organizer.lower() != person.email.lower():
        raise PermanentError(
            f"refusing to change event {event.id!r} on {person.email}: "
            f"only its organizer {event.organizer} can"
        )


def _clock(text: str) -> time:
    return time.fromisoformat(str(text)[:8])


def _merge(intervals: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for iv in sorted(intervals):
        if out and iv.start <= out[-1].end:
            out[-1] = Interval(out[-1].start, max(out[-1].end, iv.end))
        else:
            out.append(iv)
    return out


# --- mail ----------------------------------------------------------------------------


def _bracket(message_id: str) -> str:
    message_id = message_id.strip()
    return message_id if message_id.startswith("<") else f"<{message_id}>"


def build_mime(mail: OutgoingMail, sender: str) -> EmailMessage:
    """The RFC 5322 message Graph sends: headers Graph's JSON would not let us set."""
    msg = EmailMessage()
    # the employee's name only on the employee's own address, never on a shared sender
    named = mail.sender_name and sender.lower() == mail.sender.lower()
    msg["From"] = formataddr((mail.sender_name, sender)) if named else sender
    msg["To"] = ", ".join(mail.to)
    msg["Subject"] = mail.subject
    msg["Message-ID"] = _bracket(mail.message_id)
    if mail.in_reply_to:
        msg["In-Reply-To"] = _bracket(mail.in_reply_to)
    if mail.references or mail.in_reply_to:
        refs = list(mail.references) or [mail.in_reply_to or ""]
        msg["References"] = " ".join(_bracket(r) for r in refs if r)
    for name, value in mail.headers.items():
        if name.lower() in ("from", "to", "subject", "message-id", "in-reply-to", "references"):
            continue  # these come from the mail's own fields
        msg[name] = value
    if "Date" not in msg:
        msg["Date"] = format_datetime(datetime.now(UTC))
    msg.set_content(mail.text)
    if mail.html:
        msg.add_alternative(mail.html, subtype="html")
    if mail.invitation is not None:
        method = mail.invitation.method.upper()
        msg.add_alternative(
            mail.invitation.ics, subtype="calendar", params={"method": method}, cte="base64"
        )
    return msg


#: How far back replies() looks: replies to a recap come within days of it.
REPLY_WINDOW = timedelta(days=30)
#: After the first listing, only what arrived since the newest message seen, less this
#: much, for mail moved into the inbox late (from Junk, or by a rule) that keeps the
#: time it was first received.
REPLY_SLACK = timedelta(days=1)
REPLY_PAGE = 100


class MicrosoftMailer:
    """The Mailer protocol on Graph sendMail, from the sender's own mailbox; with
    ``mailboxes``, also the ReplyReader protocol on those mailboxes' inboxes."""

    def __init__(
        self,
        graph: Graph,
        sender: str | None = None,
        mailboxes: Sequence[str] = (),
        senders: Sequence[str] | None = None,
    ) -> None:
        self.graph = graph
        self.sender = sender
        #: the inboxes replies() reads: those that Cadence's mail is sent from
        self.mailboxes = sorted({m.lower() for m in mailboxes})
        #: whose mail may be a reply (the people of the relationships); None: anyone's
        self.senders = None if senders is None else {s.lower() for s in senders}
        #: per mailbox, the ids of the messages replies() has already returned, and the
        #: newest receivedDateTime seen (the high-water mark)
        self.seen: dict[str, set[str]] = {}
        self.newest: dict[str, datetime] = {}
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def replies(self) -> list[IncomingMail]:
        """The messages received in the last 30 days that replies() has not returned
        before, from the inbox of each mailbox Cadence sends from.

        One listing request per mailbox (more only past 100 messages since the newest
        seen, less a day), and one MIME request per message not seen before from one of
        ``senders``: the engine ignores anyone else's. Under a single person's sign-in
        only that person's own inbox is read (Mail.Read reaches no one else's).
        """
        signed_in = self.graph.signed_in_user()
        boxes = [m for m in self.mailboxes if signed_in is None or m == signed_in]
        floor = self.clock() - REPLY_WINDOW
        out: list[IncomingMail] = []
        listed: dict[str, tuple[list[str], datetime | None]] = {}
        for box in boxes:
            seen = self.seen.get(box, set())
            newest = self.newest.get(box)
            since = max(floor, newest - REPLY_SLACK) if newest else floor
            url = f"{_user(box)}/mailFolders/inbox/messages"
            params: dict[str, str] | None = {
                "$filter": f"receivedDateTime ge {_iso(since)}",
                "$select": "id,receivedDateTime,from",
                "$top": str(REPLY_PAGE),
            }
            ids: list[str] = []
            wanted: list[str] = []
            while True:
                page = self.graph.send("GET", url, params=params).json()
                for item in page.get("value", []):
                    if not item.get("id"):
                        continue
                    ids.append(str(item["id"]))
                    with contextlib.suppress(ValueError, TypeError):
                        got = datetime.fromisoformat(str(item.get("receivedDateTime")))
                        newest = got if newest is None or got > newest else newest
                    address = ((item.get("from") or {}).get("emailAddress") or {}).get("address")
                    if self.senders is None or str(address or "").lower() in self.senders:
                        wanted.append(str(item["id"]))
                if not page.get("@odata.nextLink"):
                    break
                url, params = str(page["@odata.nextLink"]), None
            for ident in wanted:
                if ident in seen:
                    continue
                path = f"{_user(box)}/messages/{urllib.parse.quote(ident, safe='')}/$value"
                try:
                    raw = self.graph.send("GET", path).content
                except PermanentError as exc:
                    if "ErrorItemNotFound" not in str(exc):
                        raise
                    log.info("message %s in %s was gone before it was read", ident, box)
                    continue
                out.append(IncomingMail(ref=f"graph:{box}/{ident}", raw=raw))
            listed[box] = (ids, newest)
        # only now, when every inbox was read: a call that fails returns nothing, so the
        # next call must read its messages again (ids past the window are forgotten)
        for box, (ids, newest) in listed.items():
            self.seen[box] = set(ids)
            if newest is not None:
                self.newest[box] = newest
        return out

    def close(self) -> None:
        self.graph.close()

    def send(self, mail: OutgoingMail) -> SentMail:
        sender = (self.sender or mail.sender).lower()
        for value in (mail.subject, *mail.to, *mail.headers.values()):
            if "\n" in value or "\r" in value:
                raise PermanentError("a mail header holds a line break")
        mime = build_mime(mail, sender).as_bytes()
        self.graph.send(
            "POST",
            f"{_user(sender)}/sendMail",
            data=base64.b64encode(mime),
            headers={"Content-Type": "text/plain"},
            idempotent=False,
        )
        return SentMail(mail.key, _bracket(mail.message_id), f"graph:{sender}")


# --- wiring --------------------------------------------------------------------------


def connect(ctx: Context) -> tuple[MicrosoftCalendar, MicrosoftMailer]:
    account: MicrosoftAccount = ctx.account
    read_mail = reads_replies(ctx.settings, ctx.name)
    graph = Graph(account, ctx.settings.resolve, ctx.retry, read_mail=read_mail)
    mailboxes: list[str] = []
    senders = sorted(
        {p.email.lower() for r in ctx.settings.relationships for p in (r.employee, r.partner)}
    )
    if read_mail:
        # replies come back to the From of Cadence's mail: the shared sender, or else
        # each employee of a program that collects them
        mailboxes = (
            [account.sender] if account.sender else replying_employees(ctx.settings, ctx.name)
        )
    mailer = MicrosoftMailer(graph, account.sender, mailboxes, senders)
    return MicrosoftCalendar(graph, ctx.people), mailer


def replying_employees(settings: Any, account: str) -> list[str]:
    """The employees on ``account`` whose program collects replies to recaps."""
    return list(settings.reply_accounts.get(account, ()))


def reads_replies(settings: Any, account: str) -> bool:
    """Whether ``account`` must read mail (hold Mail.Read) to collect replies."""
    return bool(replying_employees(settings, account))


__all__ = [
    "MicrosoftCalendar",
    "MicrosoftMailer",
    "connect",
    "delegated_scopes",
    "device_code_login",
    "login",
]
