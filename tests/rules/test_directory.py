"""The directory diff, its guard and the lines it starts and ends (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.directory import Entry, Limits, Line
from agent.rules import directory as rules

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def org(pairs: dict[str, str | None], **member: bool) -> dict[str, Entry]:
    return rules.resolve(
        Entry(
            f"{e}@x.example", e.title(), f"{m}@x.example" if m else None, member=member.get(e, True)
        )
        for e, m in pairs.items()
    )


BASE = {"boss": None, "lea": "boss", "max": "boss", "ana": "lea", "ben": "lea", "cy": "max"}


def test_the_same_read_changes_nothing() -> None:
    d = rules.diff(org(BASE), org(BASE))
    assert not d and d.size == 0 and d.lines() == []


def test_a_joiner_starts_a_line() -> None:
    d = rules.diff(org(BASE), org({**BASE, "dee": "max"}))
    assert [e.email for e in d.joined] == ["dee@x.example"]
    assert d.started == [("dee@x.example", "max@x.example")]
    assert d.ended == [] and d.lines() == ["joins: dee@x.example (leader max@x.example)"]


def test_a_manager_change_ends_one_line_and_starts_another() -> None:
    d = rules.diff(org(BASE), org({**BASE, "ana": "max"}))
    assert d.ended == [
        rules.Ended(("ana@x.example", "lea@x.example"), "new leader", "max@x.example")
    ]
    assert d.started == [("ana@x.example", "max@x.example")]
    assert d.lines() == ["new leader: ana@x.example: lea@x.example -> max@x.example"]
    assert len(d.manager_changes) == 1


def test_a_leaver_ends_their_lines_and_those_they_led() -> None:
    after = dict(BASE)
    del after["lea"]
    after.update(ana="boss", ben=None)
    d = rules.diff(org(BASE), org(after))
    reasons = {e.line: (e.reason, e.successor) for e in d.ended}
    assert reasons[("lea@x.example", "boss@x.example")] == ("left", None)
    assert reasons[("ana@x.example", "lea@x.example")] == ("leader left", "boss@x.example")
    assert reasons[("ben@x.example", "lea@x.example")] == ("leader left", None)
    assert [e.email for e in d.left] == ["lea@x.example"]


def test_leaving_the_program_ends_the_line_but_keeps_the_person() -> None:
    d = rules.diff(org(BASE), org(BASE, cy=False))
    assert d.ended == [rules.Ended(("cy@x.example", "max@x.example"), "left the program")]
    assert d.changed == {"cy@x.example": {"member": (True, False)}}


def test_managers_named_by_the_sources_own_id_are_resolved() -> None:
    found = rules.resolve(
        [
            Entry("Ana@X.example", manager_ref="cn=lea", ref="cn=ana"),
            Entry("lea@x.example", ref="cn=lea"),
            Entry("zed@x.example", manager_ref="cn=nobody"),
            Entry("self@x.example", manager="SELF@x.example"),
        ]
    )
    assert found["ana@x.example"].manager == "lea@x.example"
    assert found["zed@x.example"].manager is None  # a manager the read does not hold
    assert found["self@x.example"].manager is None


def test_the_guard_holds_a_read_that_lost_most_people() -> None:
    before = org(BASE)
    d = rules.diff(before, org({"boss": None}))
    reason = rules.held(d, Limits(max_drop=0.1))
    assert reason is not None and "returned 1 people, 6 last time" in reason
    assert rules.held(rules.diff({}, before), Limits()) is None  # the first read is the start
    assert rules.held(rules.diff(before, org({**BASE, "dee": "max"})), Limits()) is None


def test_the_guard_holds_far_more_changes_than_usual() -> None:
    before = org({f"p{i}": "boss" for i in range(100)} | {"boss": None})
    after = org({f"p{i}": ("boss" if i >= 30 else "p99") for i in range(100)} | {"boss": None})
    d = rules.diff(before, after)
    reason = rules.held(d, Limits(max_drop=0.1, max_changes=0.2, min_changes=10))
    assert reason is not None and "60 changes" in reason


def test_lines_after_ends_open_lines_and_starts_new_ones() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    current = [Line("ana@x.example", "lea@x.example", since)]
    d = rules.diff(org(BASE), org({**BASE, "ana": "max"}))
    ending, starting = rules.lines_after(current, d, NOW)
    assert ending == [
        Line("ana@x.example", "lea@x.example", since, NOW, "new leader", "max@x.example")
    ]
    assert starting == [Line("ana@x.example", "max@x.example", NOW)]


names = st.sampled_from([f"p{i}" for i in range(12)])
orgs = st.dictionaries(names, st.one_of(st.none(), names), max_size=12)


@settings(max_examples=300, deadline=None)
@given(orgs, orgs)
def test_applying_a_diff_gives_the_new_reporting_lines(a: dict, b: dict) -> None:
    before, after = org(a), org(b)
    d = rules.diff(before, after)
    lines = dict(rules.reporting(before))
    for e in d.ended:
        assert lines.pop(e.line[0]) == e.line[1]
    for employee, leader in d.started:
        assert employee not in lines
        lines[employee] = leader
    assert lines == rules.reporting(after)
    assert {e.email for e in d.joined} == after.keys() - before.keys()
    assert {e.email for e in d.left} == before.keys() - after.keys()
    assert all(e.successor == rules.reporting(after).get(e.line[0]) for e in d.ended)
