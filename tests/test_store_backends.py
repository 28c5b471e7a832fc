"""The store's contract, the same on SQLite and PostgreSQL: every kind of row written
reads back as written, upserts keep what they leave out, keys are unique, and a second
connection sees the first one's writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.core.directory import Entry, Line
from agent.core.model import Attendee, Changes, Channel, Event, Interval, PartStat
from agent.core.plan import Plan
from agent.store.directory import DirectoryRows
from agent.store.plans import PlanRows
from agent.store.push import PushRows
from agent.store.sqlite import SCHEMA_VERSION, Store

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ANA, BEN, KIT = "ana@acme.example", "ben@acme.example", "kit@acme.example"
REL = f"{ANA}/{BEN}"


def event(owner: str, ident: str, hours: int, key: str | None = None, **kw: object) -> Event:
    start = NOW + timedelta(hours=hours)
    return Event(
        owner=owner,
        id=ident,
        uid=f"uid-{ident}",
        key=key,
        title="Deep dive",
        start=start,
        end=start + timedelta(hours=1),
        organizer=ANA,
        attendees=(Attendee(ANA, PartStat.ACCEPTED), Attendee(BEN, PartStat.NEEDS_ACTION)),
        **kw,  # type: ignore[arg-type]
    )


def test_events_sync_and_candidates(store_at: Path | str) -> None:
    store = Store(store_at)
    try:
        assert store.version == SCHEMA_VERSION
        window = Interval(NOW - timedelta(days=30), NOW + timedelta(days=90))
        first = Changes("c1", (event(ANA, "e1", 1), event(ANA, "e2", 30, key="k1")), full=True)
        store.apply(ANA, first, window, NOW)
        store.apply(BEN, Changes("b1", (event(BEN, "e3", 5),), full=True), window, NOW)
        assert store.cursor(ANA) == "c1" and store.cursors() == {ANA: "c1", BEN: "b1"}
        assert [e.id for e in store.events([ANA, BEN])] == ["e1", "e3", "e2"]
        assert [e.id for e in store.events([ANA], NOW + timedelta(hours=3))] == ["e2"]
        store.apply(ANA, Changes("c2", (), removed=("e1",)), window, NOW)
        assert [e.id for e in store.events([ANA])] == ["e2"]
        got = store.events([ANA])[0]
        assert got == event(ANA, "e2", 30, key="k1")
        assert store.event_by_key("k1") == got
        # the candidates of a relationship: the keyed event, and BEN's meeting naming ANA
        found = store.maybe_candidates(ANA, BEN, NOW - timedelta(days=1))
        assert {e.id for e in found} == {"e2", "e3"}
        # case as written does not matter, as on SQLite
        assert {e.id for e in store.maybe_candidates_of(BEN, [ANA.upper()], NOW)} == {"e3"}
        during = Interval(NOW + timedelta(hours=5, minutes=30), NOW + timedelta(hours=7))
        assert [e.id for e in store.events_during([ANA, BEN], during)] == ["e3"]
        copy = event(BEN, "e9", 30, key="k1")
        store.put_event(copy)
        assert store.keep_only(event(ANA, "e2", 31, key="k1")) == {ANA, BEN}
        assert [e.id for e in store.events([BEN])] == ["e3"]
        store.forget_cursor(ANA)
        assert store.cursor(ANA) is None
    finally:
        store.close()


def test_bookings_outbox_meetings_ticks_and_audit(store_at: Path | str) -> None:
    store = Store(store_at)
    try:
        row = {"key": "k1", "relationship": REL, "series": "dd", "status": "pending"}
        store.save_booking(row, NOW)
        store.save_booking({"key": "k1", "status": "booked", "event_id": "x"}, NOW)
        got = store.booking("k1")
        assert got is not None and (got.status, got.event_id, got.series) == ("booked", "x", "dd")
        assert [b.key for b in store.bookings(REL)] == ["k1"] and store.bookings("x/y") == []
        mail = {"key": "m1", "meeting": "k1", "kind": "agenda", "status": "pending"}
        store.save_outbox({**mail, "message_id": "<m1@x>"}, NOW)
        store.save_outbox({"key": "m1", "status": "sent"}, NOW)
        assert store.outbox("m1")["status"] == "sent"  # type: ignore[index]
        assert store.outbox_by_message_id("<m1@x>")["key"] == "m1"  # type: ignore[index]
        assert [r["key"] for r in store.outbox_rows("k1")] == ["m1"]
        assert len(store.mail_secret) == 32
        meeting = {
            "id": "e1", "relationship": REL, "series": "dd", "stage": None,
            "start": "2026-11-24T09:00:00Z", "end": "2026-11-24T10:00:00Z",
            "status": "held", "key": "k1", "declined_by": None,
        }  # fmt: skip
        store.save_meetings(REL, [meeting, {**meeting, "id": "e2"}], tick=1)
        store.save_meetings(REL, [meeting], tick=2)
        assert store.meeting_rows() == {REL: [meeting]}
        assert store.meetings(REL)[0]["tick"] == 2
        assert store.watch([REL, REL], NOW) == {REL: NOW}
        assert store.watch([REL, "c/d"], NOW + timedelta(days=1))[REL] == NOW
        one = store.begin_tick(NOW, NOW)
        two = store.begin_tick(NOW, NOW)
        assert two > one
        store.audit(two, NOW, "book", f"booked {ANA}", REL, "dd", {"n": 1})
        store.audit(two, NOW, "mail", "sent", "Ana@Acme.example/x")
        assert [r["kind"] for r in store.audit_rows(tick=two)] == ["book", "mail"]
        assert [r["kind"] for r in store.audit_rows(relationship="ana@acme")] == ["book", "mail"]
        assert [r["kind"] for r in store.audit_rows(relationship=REL, kind="book")] == ["book"]
        assert [r["id"] for r in store.interrupt_running()] == [one, two]
        store.end_tick(two, "ok", {"booked": 1}, NOW)
        assert store.last_tick()["status"] == "ok"  # type: ignore[index]
        assert [t["status"] for t in store.ticks()] == ["ok", "interrupted"]
        store.check_usable()
        assert store.integrity() == "ok"
    finally:
        store.close()


def test_replies_actions_plans_push_and_directory(store_at: Path | str) -> None:
    store = Store(store_at)
    try:
        reply = {"message_id": "<r1>", "ref": "f/1", "relationship": REL, "employee": ANA,
                 "status": "recorded", "update_key": "u1", "received_at": "2026-11-23T08:00:00Z"}  # fmt: skip
        action = {"employee": ANA, "norm": "read it", "title": "Read it", "status": "open"}
        store.save_reply(reply, [action], NOW)
        store.record_actions([{**action, "status": "done"}], NOW + timedelta(hours=1))
        assert store.read_refs() == {"f/1"} and store.reply("<r1>")["employee"] == ANA  # type: ignore[index]
        assert [r["message_id"] for r in store.replies(ANA, "recorded")] == ["<r1>"]
        (done,) = store.actions(ANA)
        assert done["status"] == "done" and done["done_at"] == "2026-11-23T10:00:00Z"
        assert store.updates_since(REL, NOW - timedelta(hours=1)) == 1
        store.save_reply_marks("work", {ANA: "5"}, NOW)
        store.save_reply_marks("work", {ANA: "7", BEN: "1"}, NOW)
        assert store.reply_marks("work") == {ANA: "7", BEN: "1"}

        plans = PlanRows(store)
        saved = plans.save(ANA, Plan(), by=ANA, how="web", now=NOW)
        assert plans.get(ANA) == saved and saved.version == 1
        assert plans.use_link("n1", "signin", ANA, NOW) and not plans.use_link(
            "n1", "signin", ANA, NOW
        )
        plans.pause(ANA, NOW + timedelta(days=3), NOW)
        assert plans.pauses() == {ANA: NOW + timedelta(days=3)}

        push = PushRows(store)
        channel = Channel(
            ANA, "google", "ch1", "r1", "s3cret", NOW + timedelta(days=7), "https://x"
        )
        push.save(channel, NOW)
        push.save(channel, NOW)
        push.mark(ANA, "failed", NOW, "gone")
        assert push.by_id("ch1").state == "failed"  # type: ignore[union-attr]
        assert push.counts()["failed"] == 1

        rows = DirectoryRows(store)
        entries = {e: Entry(e, manager=ANA if e != ANA else None) for e in (ANA, BEN, KIT)}
        lines = [Line(BEN, ANA, NOW), Line(KIT, ANA, NOW)]
        rows.apply(NOW, entries, [], [], lines, changes=3, cursor="d1")
        rows.apply(NOW, entries, [], [], lines, changes=0, cursor="d2")
        assert rows.cursor() == "d2" and len(rows.lines(ANA)) == 2
        store.save_booking({"key": "kb", "relationship": f"{BEN}/{ANA}", "series": "s",
                            "status": "done"}, NOW)  # fmt: skip
        exported = rows.export(BEN)
        assert [r["key"] for r in exported["bookings"]] == ["kb"]
        counts = rows.forget(BEN, NOW)
        assert counts["bookings"] == 1 and counts["lines"] == 1
        assert rows.forgotten(BEN) == "2026-11-23T09:00:00Z"
        assert store.booking("kb") is None and len(rows.lines(ANA)) == 1
    finally:
        store.close()


def test_a_second_connection_sees_writes_and_notices_them(store_at: Path | str) -> None:
    one, two = Store(store_at), Store(store_at)
    try:
        assert one.mail_secret == two.mail_secret
        assert not one.notice_other_writers() and not two.notice_other_writers()
        window = Interval(NOW - timedelta(days=1), NOW + timedelta(days=1))
        one.apply(ANA, Changes("c1", (event(ANA, "e1", 1),), full=True), window, NOW)
        assert not one.notice_other_writers()  # its own write
        before = two.calendar_version(ANA)
        assert two.notice_other_writers()
        assert two.calendar_version(ANA) != before
        assert [e.id for e in two.events([ANA])] == ["e1"]
        assert not two.notice_other_writers()
    finally:
        one.close()
        two.close()


def test_any_write_by_another_connection_is_noticed(store_at: Path | str) -> None:
    """Not only events: a booking or a plan written elsewhere changes what a kept
    engine assessed (SQLite's ``data_version`` counts every commit too)."""
    one, two = Store(store_at), Store(store_at)
    try:
        assert not two.notice_other_writers()
        one.save_booking({"key": "k", "relationship": REL, "series": "s", "status": "x"}, NOW)
        assert two.notice_other_writers() and not two.notice_other_writers()
        one.bookings()  # reads are no writes
        assert not two.notice_other_writers()
        two.audit(None, NOW, "note", "mine")  # its own write
        assert not two.notice_other_writers()
    finally:
        one.close()
        two.close()
