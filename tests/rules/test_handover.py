"""What an ended reporting line plans: cancellations, the note, the hand-over (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.core.directory import Line
from agent.core.model import Event
from agent.core.plan import ActionItem, Goal, Plan
from agent.core.records import StoredBooking
from agent.rules import handover, mailplan
from agent.rules.actions import Cancel, Send
from agent.settings import templates
from tests.factories import person

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ANA, LEA, MAX = person("ana"), person("lea"), person("max")
LINE = Line(ANA.email, LEA.email, NOW - timedelta(days=200), NOW, "new leader", MAX.email)
AHEAD = StoredBooking(
    key="k1",
    relationship=LINE.id,
    series="deep_dive",
    status="booked",
    start=NOW + timedelta(days=5),
    end=NOW + timedelta(days=5, hours=1),
    organizer=ANA.email,
)
EVENT = Event(ANA.email, "e1", "Align", AHEAD.start, AHEAD.end, key="k1")  # type: ignore[arg-type]


def ctx(plan: Plan | None, sent: tuple[str, ...] = ()) -> mailplan.MailContext:
    return mailplan.MailContext(
        now=NOW,
        relationships=(),
        outbox={k: mailplan.Outboxed("sent") for k in sent},
        plans={ANA.email: plan},
        templates=templates.packaged(),
        secret=b"k" * 32,
    )


def ending() -> handover.Ending:
    return handover.Ending(LINE, ANA, LEA, MAX, [(AHEAD, EVENT)], last="Align, Mon 3 Aug 2026")


PLAN = Plan(goals=[Goal(title="Ship the ledger")], actions=[ActionItem(title="Write the RFC")])
EVERYONE = frozenset({ANA.email, LEA.email, MAX.email})


def test_cancels_what_is_ahead_then_tells_both_and_hands_over() -> None:
    shared = PLAN.model_copy(update={"share_with_new_leader": True})
    actions = handover.plan([ending()], ctx(shared), EVERYONE)
    assert [a.kind for a in actions] == ["cancel", "ended", "handover"]
    cancel, ended, hand = actions
    assert isinstance(cancel, Cancel) and cancel.organizer == ANA and cancel.event == EVENT
    assert isinstance(ended, Send) and ended.mail.to == (ANA.email, LEA.email)
    assert ended.meeting == cancel.line  # the note waits for the cancellations
    assert "deep dive, " in ended.mail.text and "cancelled" in ended.mail.text
    assert isinstance(hand, Send) and hand.mail.to == (MAX.email, ANA.email)
    assert "Ship the ledger" in hand.mail.text and "- [ ] Write the RFC" in hand.mail.text
    assert "Align, Mon 3 Aug 2026" in hand.mail.text


def test_a_plan_not_shared_stays_with_the_employee() -> None:
    actions = handover.plan([ending()], ctx(PLAN), EVERYONE)
    hand = actions[-1]
    assert isinstance(hand, Send) and hand.kind == "handover"
    assert "Ship the ledger" not in hand.mail.text and "Write the RFC" not in hand.mail.text
    assert "Align, Mon 3 Aug" not in hand.mail.text
    assert "keeps their development plan to themselves" in hand.mail.text


def test_mail_already_sent_is_not_planned_again_and_leavers_get_none() -> None:
    first = handover.plan([ending()], ctx(PLAN), EVERYONE)
    sent = tuple(a.key for a in first if isinstance(a, Send))
    again = handover.plan([ending()], ctx(PLAN, sent), EVERYONE)
    assert [a.kind for a in again] == ["cancel"]
    gone = handover.plan([ending()], ctx(PLAN), frozenset({LEA.email, MAX.email}))
    assert [a.kind for a in gone] == ["cancel"]
    no_leader = handover.plan([ending()], ctx(PLAN), frozenset({ANA.email, MAX.email}))
    ended = no_leader[1]
    assert isinstance(ended, Send) and ended.mail.to == (ANA.email,)
