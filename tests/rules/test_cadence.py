from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.rules import cadence, classify
from agent.rules.classify import Status
from tests.factories import at, meeting_event, person, relationship

NOW = at("2026-11-23T14:00:00+00:00")


def states(rel, events, now=NOW):
    found = classify.meetings(rel, events, {}, now)
    return {s.name: s for s in cadence.assess(rel, found, now)}


def test_lapse_reason_names_the_last_meeting_and_the_rule() -> None:
    rel = relationship()
    events = [meeting_event(rel, "Development Align: Ana & Ben", at("2026-07-02T08:00:00+00:00"))]
    deep = states(rel, events)["deep_dive"]
    assert deep.lapsed
    assert deep.due_reason == (
        "deep_dive lapsed: last held 2026-07-02 (144 days) > 90d + 7d grace; due 2026-09-30"
    )


def test_within_grace_is_due_but_not_lapsed() -> None:
    rel = relationship()
    events = [meeting_event(rel, "Deep dive", NOW - timedelta(days=94))]
    deep = states(rel, events)["deep_dive"]
    assert not deep.lapsed
    assert deep.due < NOW


def test_never_held_is_due_now_with_the_first_stage() -> None:
    deep = states(relationship(), [])["deep_dive"]
    assert deep.due == NOW and not deep.lapsed
    assert deep.stage == "align"


def test_a_scheduled_meeting_means_no_lapse() -> None:
    rel = relationship()
    events = [
        meeting_event(rel, "Development Align", NOW - timedelta(days=200)),
        meeting_event(rel, "Development Advance", NOW + timedelta(days=3)),
    ]
    deep = states(rel, events)["deep_dive"]
    assert not deep.lapsed
    assert deep.next_scheduled is not None
    assert cadence.booking_need(deep, NOW) is None


def test_declined_and_cancelled_meetings_do_not_count_as_held() -> None:
    rel = relationship()
    events = [
        meeting_event(rel, "Development Align", NOW - timedelta(days=200)),
        meeting_event(
            rel, "Development Advance", NOW - timedelta(days=100), declined=rel.partner.email
        ),
        meeting_event(rel, "Development Advance", NOW - timedelta(days=95), cancelled=True),
    ]
    deep = states(rel, events)["deep_dive"]
    assert deep.last_held is not None and deep.last_held.title == "Development Align"
    assert [m.status for m in deep.history] == [Status.HELD, Status.DECLINED, Status.CANCELLED]
    assert deep.stage == "advance"


def test_stage_cycle_follows_the_last_held_stage_and_wraps() -> None:
    rel = relationship()
    events = [meeting_event(rel, "Development Advocate", NOW - timedelta(days=100))]
    assert states(rel, events)["deep_dive"].stage == "align"
    untitled = [
        meeting_event(rel, "Deep dive", NOW - timedelta(days=300)),
        meeting_event(rel, "Deep dive", NOW - timedelta(days=200)),
    ]
    assert states(rel, untitled)["deep_dive"].stage == "amplify"  # align, advance, then amplify


def test_only_meetings_with_both_people_count() -> None:
    rel = relationship()
    other = relationship(partner=person("carl"))
    event = meeting_event(other, "Development Align", NOW - timedelta(days=10))
    assert states(rel, [event])["deep_dive"].last_held is None


def test_check_in_is_skipped_near_a_deep_dive() -> None:
    rel = relationship()
    events = [
        meeting_event(rel, "Development check-in", NOW - timedelta(days=40), 15),
        meeting_event(rel, "Development Align", NOW + timedelta(days=5)),
    ]
    check = states(rel, events)["check_in"]
    assert check.skip_reason and "deep_dive" in check.skip_reason
    assert cadence.booking_need(check, NOW) is None


def test_a_held_deep_dive_resets_the_check_in_clock() -> None:
    rel = relationship()
    events = [
        meeting_event(rel, "Development check-in", NOW - timedelta(days=50), 15),
        meeting_event(rel, "Development Align", NOW - timedelta(days=20)),
    ]
    check = states(rel, events)["check_in"]
    assert check.due == cadence.add_local(
        NOW - timedelta(days=20), timedelta(days=30), rel.employee.zone
    )


def test_booking_key_is_stable_and_changes_with_the_last_meeting() -> None:
    rel = relationship()
    one = [meeting_event(rel, "Deep dive", NOW - timedelta(days=100))]
    a = states(rel, one)["deep_dive"].key
    b = states(rel, one, NOW + timedelta(hours=5))["deep_dive"].key
    two = [*one, meeting_event(rel, "Deep dive", NOW - timedelta(days=3))]
    assert a == b
    assert states(rel, two)["deep_dive"].key != a


def test_booking_need_range_respects_lead_time_and_horizon() -> None:
    rel = relationship()
    deep = states(rel, [meeting_event(rel, "Deep dive", NOW - timedelta(days=150))])["deep_dive"]
    need = cadence.booking_need(deep, NOW)
    assert need is not None
    assert need.earliest == NOW + timedelta(days=2)
    assert need.latest == NOW + timedelta(days=16)
    local = (NOW - timedelta(days=150)).astimezone(ZoneInfo("Europe/Berlin"))
    assert need.prefer == (local.weekday(), local.hour, local.minute)


zones = st.sampled_from(
    [
        "Europe/Berlin",
        "America/New_York",
        "America/Sao_Paulo",
        "Australia/Sydney",
        "Asia/Kolkata",
        "Pacific/Auckland",
        "America/Los_Angeles",
        "Europe/London",
    ]
)


@settings(max_examples=1000, deadline=None)
@given(
    zone=zones,
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)),
    days=st.integers(min_value=1, max_value=400),
)
def test_intervals_keep_local_wall_clock_across_dst(zone: str, start: datetime, days: int) -> None:
    tz = ZoneInfo(zone)
    local = start.replace(tzinfo=tz, second=0, microsecond=0)
    # skip non-existent local times: they have no wall clock to keep
    if local.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        return
    moved = cadence.add_local(local.astimezone(UTC), timedelta(days=days), tz).astimezone(tz)
    expected = local.replace(tzinfo=None) + timedelta(days=days)
    if moved.replace(tzinfo=None) != expected:
        # only allowed when the target wall time does not exist (spring forward gap)
        round_trip = expected.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)
        assert round_trip.replace(tzinfo=None) != expected
    assert moved.tzinfo is not None


@settings(max_examples=500, deadline=None)
@given(
    age=st.integers(min_value=0, max_value=500),
    zone=zones,
    scheduled=st.booleans(),
)
def test_lapse_matches_its_definition(age: int, zone: str, scheduled: bool) -> None:
    rel = relationship(emp=person("ana", zone), partner=person("ben"))
    events = [meeting_event(rel, "Deep dive", NOW - timedelta(days=age, hours=1))]
    if scheduled:
        events.append(meeting_event(rel, "Deep dive", NOW + timedelta(days=2)))
    deep = states(rel, events)["deep_dive"]
    held = NOW - timedelta(days=age, hours=1)
    limit = cadence.add_local(
        cadence.add_local(held, timedelta(days=90), rel.employee.zone),
        timedelta(days=7),
        rel.employee.zone,
    )
    assert deep.lapsed == (not scheduled and limit < NOW)
    assert deep.due > held


def test_copies_of_one_booking_merge_by_uid_even_without_the_tag() -> None:
    from dataclasses import replace

    rel = relationship()
    start = NOW + timedelta(days=3)
    mine = meeting_event(rel, "Development Align", start, key="k" * 32, uid="u1")
    theirs = replace(
        meeting_event(
            rel, "Development Align", start, owner=rel.partner, declined=rel.partner.email, uid="u1"
        ),
        id="other-calendar-id",
    )
    own = {"k" * 32: classify.Own(rel.id, "deep_dive", "align")}
    found = classify.meetings(rel, [mine, theirs], own, NOW)
    assert len(found) == 1
    assert found[0].key == "k" * 32 and found[0].status is Status.DECLINED
    assert found[0].event is not None and found[0].event.key == "k" * 32


def test_a_meeting_keeps_its_id_whichever_copies_were_read() -> None:
    """A calendar that fails to sync leaves only the other copy: the meeting (and so the
    outbox keys of its agenda and recap) must not change identity with it."""
    from dataclasses import replace

    rel = relationship()
    start = NOW - timedelta(hours=5)
    organizers = meeting_event(rel, "Development Advance", start, uid="shared-uid")
    attendees = replace(
        meeting_event(rel, "Development Advance", start, owner=rel.partner, uid="shared-uid"),
        id="the-partners-copy",
    )
    ids = {
        tuple(m.id for m in classify.meetings(rel, seen, {}, NOW))
        for seen in ([organizers, attendees], [organizers], [attendees])
    }
    assert len(ids) == 1 and len(next(iter(ids))) == 1


_TITLES = ["Development Align", "Deep dive", "check-in", "Standup", "1:1", "Development Advance"]


@st.composite
def _calendar(draw: st.DrawFn) -> tuple[list, dict]:
    """Events of both people (and a stranger) with random titles, attendees, tags and
    shared UIDs, and a random set of the agent's bookings."""
    from dataclasses import replace

    rel = relationship()
    stranger = person("zoe@acme.example", "Asia/Tokyo")
    keys = [f"{c}" * 32 for c in "abc"]
    events = []
    for i in range(draw(st.integers(0, 12))):
        start = NOW + timedelta(hours=draw(st.integers(-2000, 500)))
        ev = meeting_event(
            rel,
            draw(st.sampled_from(_TITLES)),
            start,
            owner=draw(st.sampled_from([rel.employee, rel.partner, stranger])),
            key=draw(st.sampled_from([None, None, *keys])),
            uid=draw(st.sampled_from([f"u{i}", "shared-1", "shared-2"])),
            declined=draw(st.sampled_from([None, rel.partner.email])),
            cancelled=draw(st.booleans()),
        )
        if draw(st.booleans()):  # a copy that does not list both people
            ev = replace(ev, attendees=ev.attendees[:1], organizer=None)
        if draw(st.booleans()):
            ev = replace(ev, all_day=True)
        events.append(replace(ev, id=f"e{i}"))
    own = {
        k: classify.Own(draw(st.sampled_from([rel.id, "other|rel"])), "deep_dive", None)
        for k in keys
        if draw(st.booleans())
    }
    return events, own


@settings(max_examples=300, deadline=None)
@given(_calendar())
def test_candidates_keep_every_meeting(drawn: tuple[list, dict]) -> None:
    """The quiet tick classifies only the events kept from the last read: whatever the
    agent has booked since, they give the same meetings as the whole calendars."""
    events, own = drawn
    rel = relationship()
    kept = classify.candidates(rel, events)
    assert classify.meetings(rel, kept, own, NOW) == classify.meetings(rel, events, own, NOW)


def test_candidates_keep_an_untagged_copy_of_a_booking() -> None:
    """A copy without the tag and without both people (as some servers deliver the
    attendee's copy) still belongs to the booking by its UID: here it carries the
    partner's decline."""
    from dataclasses import replace

    from agent.core.model import Attendee, PartStat

    rel = relationship()
    start = NOW + timedelta(days=2)
    tagged = meeting_event(rel, "Development Align", start, key="k" * 32, uid="shared")
    bare = replace(
        meeting_event(rel, "Development Align", start, owner=rel.partner, uid="shared"),
        id="bare",
        attendees=(Attendee(rel.partner.email, PartStat.DECLINED),),
        organizer=None,
        all_day=True,
    )
    kept = classify.candidates(rel, [tagged, bare])
    assert bare in kept
    own = {"k" * 32: classify.Own(rel.id, "deep_dive", "align")}
    [meeting] = classify.meetings(rel, kept, own, NOW)
    assert meeting.status is Status.DECLINED
