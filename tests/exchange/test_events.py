"""create/find/move/cancel: the agent's own meetings, tagged with the booking key."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.connectors.exchange import KEY_NAME, KEY_SET, ExchangeCalendar
from agent.core.errors import PermanentError
from agent.core.model import EventDraft, Interval, PartStat, Person
from agent.core.retry import RetryPolicy
from tests.exchange import fixtures
from tests.exchange.server import EwsServer, t

WINDOW = Interval(datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 31, tzinfo=UTC))
START = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
KEY = "0123456789abcdef0123456789abcdef"


def draft(staff: list[Person], key: str = KEY) -> EventDraft:
    ana, ben, _ = staff
    return EventDraft(
        key=key,
        organizer=ana,
        attendees=(ana, ben),
        title="Development Align: Ana & Ben",
        start=START,
        end=START + timedelta(hours=1),
        timezone=ana.timezone,
        description="Reflect on goals.",
    )


def test_create_invites_tags_and_returns_the_organizers_item(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana, ben, _ = staff
    event = cal.create(draft(staff))

    assert event.key == KEY and event.owner == ana.email and event.organizer == ana.email
    assert event.start == START and event.end == START + timedelta(hours=1)
    assert [a.email for a in event.attendees] == [ben.email]  # the organizer is not invited
    [create] = [r for r in server.requests if r.operation == "CreateItem"]
    assert create.body.get("SendMeetingInvitations") == "SendToAllAndSaveCopy"
    assert create.impersonating == ana.email
    [item] = server.items_of(ana.email)
    assert item.ext == {(KEY_SET, KEY_NAME, "String"): KEY}
    # stored in the organizer's zone, so Outlook shows it at local wall time
    zone = create.body.find(f".//{t('StartTimeZone')}")
    assert zone is not None and zone.get("Id") == "W. Europe Standard Time"
    assert ("request", ben.email, event.title) in server.invitations
    [copy] = cal.changes(ben, None, WINDOW).events
    assert copy.key == KEY and copy.partstat(ben.email) is PartStat.NEEDS_ACTION
    assert copy.description == "Reflect on goals."


def test_a_retried_create_finds_the_first_one(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    first = cal.create(draft(staff))
    second = cal.create(draft(staff))
    assert second.id == first.id
    assert server.counts["CreateItem"] == 1


def test_a_lost_create_response_is_retried_without_a_duplicate(
    server: EwsServer, ca: Path, staff: list[Person]
) -> None:
    slept: list[float] = []
    retry = RetryPolicy(attempts=3, sleep=slept.append, rand=lambda: 0.0)
    connection = fixtures.ews(server, ca, retry=retry)
    cal = ExchangeCalendar(connection, staff)
    server.lose_response("CreateItem")
    try:
        event = cal.create(draft(staff))
    finally:
        cal.close()
    assert event.key == KEY
    assert server.counts["CreateItem"] == 1  # the retry looked first and found it
    assert len(server.items_of(staff[0].email)) == 1
    assert len(slept) == 1


def test_find_searches_the_tag_only(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana = staff[0]
    assert cal.find(ana, KEY) is None
    created = cal.create(draft(staff))
    other = cal.create(draft(staff, key="fedcba9876543210fedcba9876543210"))
    found = cal.find(ana, KEY)
    assert found is not None and found.id == created.id and found.id != other.id
    [search, *_] = [r for r in server.requests if r.operation == "FindItem"]
    uri = search.body.find(f".//{t('ExtendedFieldURI')}")
    assert uri is not None and uri.get("PropertyName") == KEY_NAME
    assert search.body.find(f".//{t('Constant')}") is not None
    with pytest.raises(PermanentError):
        cal.find(ana, "x' or 1=1")


def test_move_raises_the_sequence_and_updates_the_attendee(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana, ben, _ = staff
    created = cal.create(draft(staff))
    later = Interval(START + timedelta(days=1), START + timedelta(days=1, hours=1))
    moved = cal.move(ana, created, later)
    assert moved.id == created.id and moved.start == later.start
    assert moved.sequence == created.sequence + 1 and moved.key == KEY
    [update] = [r for r in server.requests if r.operation == "UpdateItem"]
    assert update.body.get("SendMeetingInvitationsOrCancellations") == "SendToAllAndSaveCopy"
    [copy] = cal.changes(ben, None, WINDOW).events
    assert copy.start == later.start and copy.sequence == moved.sequence


def test_cancel_removes_the_item_and_cancels_the_copy(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana, ben, _ = staff
    created = cal.create(draft(staff))
    cal.cancel(ana, created)
    assert cal.find(ana, KEY) is None
    [delete] = [r for r in server.requests if r.operation == "DeleteItem"]
    assert delete.body.get("SendMeetingCancellations") == "SendToAllAndSaveCopy"
    [copy] = cal.changes(ben, None, WINDOW).events
    assert copy.cancelled and not copy.blocks_time
    cal.cancel(ana, created)  # already gone: nothing to do


def test_other_peoples_items_are_never_touched(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana, ben, _ = staff
    server.add_event(ana.email, "Their meeting", START, START + timedelta(hours=1), [ben.email])
    [theirs] = cal.changes(ana, None, WINDOW).events
    created = cal.create(draft(staff))
    [copy] = [e for e in cal.changes(ben, None, WINDOW).events if e.key == KEY]
    server.reset_counts()
    with pytest.raises(PermanentError):
        cal.cancel(ana, theirs)
    with pytest.raises(PermanentError):
        cal.move(ana, theirs, Interval(START, START + timedelta(hours=1)))
    with pytest.raises(PermanentError, match="organizer"):
        cal.cancel(ben, copy)  # Ben's copy of the agent's meeting: only Ana's can change
    assert not server.counts  # refused before any request
    assert created.key == KEY


def test_requests_name_the_version_and_the_impersonated_mailbox(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    cal.create(draft(staff))
    assert {r.api_version for r in server.requests} == {"Exchange2016"}
    assert {r.impersonating for r in server.requests} == {staff[0].email}
    sample = ET.tostring(server.requests[0].header).decode() if server.requests[0].header else ""
    assert "ExchangeImpersonation" in sample and "RequestServerVersion" in sample
