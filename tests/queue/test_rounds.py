"""A round of the task queue as its workers run it (each unit's task, then the chores),
at the engine level on both stores: what the tick of ``cadence serve`` does across every
unit must happen across a round too."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from agent.rules import planning
from agent.settings import config
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests.directory.test_lifecycle import PEOPLE, at, cadence, event_status, mails, write_people
from tests.directory.test_lifecycle import org as org
from tests.stores import use_store


@contextmanager
def engine_of(folder: Path) -> Iterator[Engine]:
    with Engine(config.load(folder / "cadence.yaml")) as engine:
        yield engine


def queue_round(folder: Path, when: str) -> None:
    """One scheduler round: a task per scheduling unit, then the chores task, each as
    ``agent.queue.app`` runs it (a worker's engine, kept from task to task)."""
    now = datetime.fromisoformat(when)
    with engine_of(folder) as engine:
        engine.lay_directory()
        for unit in planning.units(engine.settings.relationships):
            engine.tick(now, units=frozenset([unit.partner]), chores=False)
        engine.tick(now, units=frozenset(), chores=True)


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

    # the next round plans none of it again
    queue_round(org, at(19))
    assert mails(org).keys() == sent.keys()
