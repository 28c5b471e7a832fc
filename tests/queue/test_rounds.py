"""A round of the task queue as its workers run it (each unit's task, then the chores),
at the engine level on both stores: what the tick of ``cadence serve`` does across every
unit must happen across a round too."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from agent.rules import planning
from agent.settings import config
from agent.store import rounds
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests.directory.test_lifecycle import PEOPLE, at, cadence, event_status, mails, write_people
from tests.directory.test_lifecycle import org as org
from tests.stores import use_store


@contextmanager
def engine_of(folder: Path) -> Iterator[Engine]:
    with Engine(config.load(folder / "cadence.yaml")) as engine:
        yield engine


def queue_round(folder: Path, when: str, round_id: str | None = None) -> dict[str, str]:
    """One scheduler round: a task per scheduling unit, then the chores task, each as
    ``agent.queue.app`` runs it (a worker's engine, kept from task to task); return
    each unit's tick status."""
    now = datetime.fromisoformat(when)
    statuses = {}
    with engine_of(folder) as engine:
        engine.lay_directory()
        for unit in planning.units(engine.settings.relationships):
            report = engine.tick(
                now, units=frozenset([unit.partner]), chores=False, round_id=round_id
            )
            statuses[unit.partner] = engine.store.ticks(limit=1)[0]["status"]
            assert report.tick == engine.store.ticks(limit=1)[0]["id"]
        engine.tick(now, units=frozenset(), chores=True)
    return statuses


def test_a_round_cancels_the_bookings_of_a_line_that_ended(
    org: Path,
    store_at: Path | str,
) -> None:
    use_store(org / "cadence.yaml", store_at)
    cadence(org, "directory", "sync", "--now", at(0))
    queue_round(org, at(0))
    queue_round(org, at(17))
    store = Store(store_at)
    try:
        old = next(
            b
            for b in store.bookings("ana@acme.example/lea@acme.example")
            if b.series == "deep_dive"
        )
    finally:
        store.close()
    assert old.status == "booked"

    # Ana moves to Max: the line with Lea ends, and no unit has it any more
    write_people(org, {**PEOPLE, "ana": "Ana Alves,max@acme.example,Europe/Berlin,DE,yes"})
    cadence(org, "directory", "sync", "--now", at(18))
    queue_round(org, at(18))
    store = Store(store_at)
    try:
        after = store.booking(old.key)
    finally:
        store.close()
    assert after is not None and after.status == "cancelled"
    assert event_status(org, "lea@acme.example", old.key) == "CANCELLED"
    sent = mails(org)
    ended = [m for m in sent.values() if "have ended" in str(m["Subject"])]
    handover = [m for m in sent.values() if str(m["Subject"]).startswith("Development hand-over")]
    assert len(ended) == 1 and len(handover) == 1
    # the chores read the ended line's plan and actions: the hand-over carries them
    body = handover[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Lead the payments migration" in body and "- [ ] Pair with the SRE team" in body

    # the next round plans none of it again
    queue_round(org, at(19))
    assert mails(org).keys() == sent.keys()


def booked(store_at: Path | str) -> set[str]:
    store = Store(store_at)
    try:
        return {b.relationship for b in store.bookings() if b.status == "booked"}
    finally:
        store.close()


LEA_UNIT = {"ana@acme.example/lea@acme.example", "ben@acme.example/lea@acme.example"}
BOSS_UNIT = {"lea@acme.example/boss@acme.example"}


@pytest.mark.parametrize(
    "limits",
    [
        # alone, lea's unit (4 actions, 2 of 3 lines) and boss's (2, 1) are within both
        "guard: {max_actions: 5}",
        "guard: {max_share: 70%, min_relationships: 1}",
    ],
)
def test_the_guard_counts_across_a_round_and_holds_until_confirmed(
    org: Path,
    store_at: Path | str,
    limits: str,
) -> None:
    use_store(org / "cadence.yaml", store_at)
    text = (org / "cadence.yaml").read_text()
    (org / "cadence.yaml").write_text(text + limits + "\n")
    cadence(org, "directory", "sync", "--now", at(0))
    queue_round(org, at(0))

    # the round's first unit acts; the second would take the round past the limit
    statuses = queue_round(org, at(17), "round-17")
    assert booked(store_at) == LEA_UNIT
    assert statuses == {"lea@acme.example": "ok", "boss@acme.example": "held"}
    store = Store(store_at)
    try:
        held = rounds.hold(store)
        assert held is not None and "round round-17" in str(held["reason"])
        guard_rows = store.audit_rows(kind="guard")
        said = [r["message"] for r in guard_rows if "held back by the guard" in r["message"]]
        assert len(said) == 1 and "round round-17" in said[0]
    finally:
        store.close()

    # the next round holds too (a new tally would let the mistake through a bit a round)
    assert queue_round(org, at(17), "round-17b")["boss@acme.example"] == "held"
    assert booked(store_at) == LEA_UNIT

    # a person confirms: the full tick books the rest, and the rounds act again
    cadence(org, "run", "--once", "--confirm", "--now", at(17))
    assert booked(store_at) == LEA_UNIT | BOSS_UNIT
    store = Store(store_at)
    try:
        assert rounds.hold(store) is None
    finally:
        store.close()
    assert set(queue_round(org, at(18), "round-18").values()) == {"ok"}


def test_raised_limits_end_the_hold(org: Path, store_at: Path | str) -> None:
    use_store(org / "cadence.yaml", store_at)
    text = (org / "cadence.yaml").read_text()
    (org / "cadence.yaml").write_text(text + "guard: {max_actions: 5}\n")
    cadence(org, "directory", "sync", "--now", at(0))
    queue_round(org, at(0))
    assert queue_round(org, at(17), "r1")["boss@acme.example"] == "held"
    (org / "cadence.yaml").write_text(text + "guard: {max_actions: 6}\n")
    assert queue_round(org, at(17), "r2")["boss@acme.example"] == "ok"
    assert booked(store_at) == LEA_UNIT | BOSS_UNIT
