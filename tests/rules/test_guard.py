"""The guard against mass mistakes, alone: a plan's scale against the limits."""

from __future__ import annotations

from agent.core.model import Guard
from agent.rules import guard
from agent.rules.actions import Note, Send
from agent.rules.guard import Count


def _notes(n: int) -> list[Note]:
    return [
        Note(f"k{i}", f"r{i}", "s", "no slot", kind="book", outcome="no-slot") for i in range(n)
    ]


def test_only_actions_that_change_something_count() -> None:
    assert guard.count(_notes(5), 10) == Count(0, 0, 10)


def test_a_number_of_actions() -> None:
    limit = Guard(max_actions=3)
    assert guard.exceeded(Count(3, 2, 10), limit) is None
    held = guard.exceeded(Count(4, 2, 10), limit)
    assert held is not None and "guard.max_actions (3)" in held and "4 booking(s)" in held


def test_a_share_of_relationships_from_a_size_on() -> None:
    limit = Guard(max_share=0.25, min_relationships=20)
    assert guard.exceeded(Count(30, 5, 20), limit) is None  # 25 %: not more
    held = guard.exceeded(Count(30, 6, 20), limit)
    assert held is not None and "6 of 20 relationships (30%)" in held
    assert guard.exceeded(Count(30, 6, 19), limit) is None  # a small team may all lapse


def test_no_limit_holds_nothing() -> None:
    assert guard.exceeded(Count(10**6, 10**4, 10**4), Guard()) is None


def test_a_relationship_counts_once_however_many_mails_it_gets() -> None:
    mail = Send.__new__(Send)  # only kind and relationship matter for the count
    object.__setattr__(mail, "relationship", "r1")
    object.__setattr__(mail, "kind", "agenda")
    assert guard.count([mail, mail, *_notes(2)], 4) == Count(2, 1, 4)
