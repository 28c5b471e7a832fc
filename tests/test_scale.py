"""What the organization-scale work relies on: the store's parsed-calendar memory never
serves stale events, the audit lookup by relationship is exact, the token bucket paces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.core.model import Attendee, Changes, Event, Interval, PartStat
from agent.core.ratelimit import TokenBucket
from agent.store.sqlite import Store

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
WINDOW = Interval(NOW - timedelta(days=400), NOW + timedelta(days=100))


def event(owner: str, ident: str, days: int, title: str = "Sync") -> Event:
    start = NOW + timedelta(days=days)
    who = (Attendee(owner, PartStat.ACCEPTED), Attendee("ben@x.example", PartStat.DECLINED))
    return Event(owner, ident, title, start, start + timedelta(hours=1), attendees=who)


def test_events_are_read_again_after_each_change() -> None:
    store = Store()
    ana, ben = "ana@x.example", "ben@x.example"
    store.apply(
        ana, Changes("c1", (event(ana, "a1", -3), event(ana, "a2", 2)), full=True), WINDOW, NOW
    )
    store.apply(ben, Changes("c1", (event(ben, "b1", -1),), full=True), WINDOW, NOW)
    since = NOW - timedelta(days=10)
    first = store.events([ana, ben], since)
    assert [e.id for e in first] == ["a1", "b1", "a2"]  # by start across both calendars
    assert first[0].attendees[1].partstat is PartStat.DECLINED
    assert store.events([ana, ben], since) == first  # from memory, equal
    first.clear()  # a caller's list is its own
    assert len(store.events([ana], since)) == 2

    store.apply(ana, Changes("c2", (event(ana, "a1", -3, "Moved"),), ("a2",)), WINDOW, NOW)
    assert [(e.id, e.title) for e in store.events([ana, ben], since)] == [
        ("a1", "Moved"),
        ("b1", "Sync"),
    ]
    store.put_event(event(ben, "b2", 5))
    assert [e.id for e in store.events([ben], since)] == ["b1", "b2"]
    tagged = Event(
        ana, "k1", "Deep dive", NOW + timedelta(days=3), NOW + timedelta(days=3, hours=1), key="k"
    )
    store.put_event(Event(ben, "k1-copy", "Deep dive", tagged.start, tagged.end, key="k"))
    assert "k1-copy" in [e.id for e in store.events([ben], since)]
    store.keep_only(tagged)  # drops the other calendars' copies of the booking
    assert "k1-copy" not in [e.id for e in store.events([ben], since)]
    assert [e.id for e in store.events([ana], NOW + timedelta(days=1))] == ["k1"]
    store.close()


def test_audit_rows_of_one_relationship_are_exact() -> None:
    store = Store()
    for rel in ("ana@x.example/ben@x.example", "diana@x.example/ben@x.example"):
        store.audit(1, NOW, "assess", f"about {rel}", rel, "deep_dive")
    rows = store.audit_rows(relationship="ana@x.example/ben@x.example", kind="assess")
    assert [r["message"] for r in rows] == ["about ana@x.example/ben@x.example"]
    assert len(store.audit_rows(relationship="ben@x.example")) == 2  # a part: a search
    plan = store.db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM audit WHERE relationship = ? AND kind = ? "
        "ORDER BY id DESC LIMIT 5",
        ["a/b", "assess"],
    ).fetchall()
    assert "audit_relationship_kind" in str(plan)
    store.close()


def test_token_bucket_paces_after_the_burst() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    bucket = TokenBucket(rate=10, burst=3, clock=lambda: clock[0], sleep=sleep)
    waits = [bucket.take() for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert [round(w, 3) for w in waits[3:]] == [0.1, 0.1]
    clock[0] += 10  # a quiet spell refills the bucket to its size, no more
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert round(bucket.take(), 3) == 0.1
