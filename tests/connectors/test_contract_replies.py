"""Replies to recaps, over every provider: a reply filed in the employee's inbox becomes
open actions and one updated recap in the same thread, and is read once, also by a new
process. The readers' own rules (marks, sizes, forged senders) are tested per provider."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

from agent.core.retry import RetryPolicy
from agent.tick.engine import Engine
from tests.connectors.test_contract import Requests, done, mails

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday
HELD = NOW - timedelta(hours=3)  # Ana's check-in with Ben: its recap is due
PROGRAMS = """\
relationships:
  - {employee: @ANA@, partner: @BEN@, role: leader, program: leader-cycle}
  - {employee: @CHLOE@, partner: @BEN@, role: leader, program: leader-cycle}
programs:
  leader-cycle:
    organizer: employee
    series:
      check_in:
        every: 30d
        duration: 15m
        title: "Development check-in: {{ employee.first_name }} & {{ partner.first_name }}"
        match: '(?i)\\bcheck-?in\\b'
    booking: {horizon: 14d, lead_time: 2d, window: "10:00-16:00", buffer: 10m}
    recap: {after: 2h, collect_replies: true, backfill: 1d}
"""
TEXT = "Thanks, Ana!\n\n- [ ] draft the proposal (due 2026-12-15)\n\nBen\n"
REPLY_ID = "<re1@mail.example>"


def answer(sender: str, to: str, parent: str) -> bytes:
    """Ben's answer to the recap from his own mail client."""
    msg = EmailMessage(policy=SMTP)
    msg["From"], msg["To"], msg["Subject"] = sender, to, "Re: Recap"
    msg["Date"] = "Mon, 23 Nov 2026 14:05:00 +0000"
    msg["Message-ID"] = REPLY_ID
    msg["In-Reply-To"] = msg["References"] = parent
    msg.set_content(TEXT)
    return msg.as_bytes()


def test_a_reply_becomes_actions_and_one_updated_recap_read_once(
    backend: Any, on_store: Any
) -> None:
    ana, ben, chloe = backend.people[:3]
    backend.read_replies()
    backend.add_event(
        ana, "Development check-in: Ana & Ben", HELD, HELD + timedelta(minutes=15), [ben]
    )
    lately = NOW - timedelta(days=10)  # Chloe's is not due: only Ana's recap is
    backend.add_event(
        chloe, "Development check-in: Chloe & Ben", lately, lately + timedelta(minutes=15), [ben]
    )
    text = PROGRAMS
    for name, who in (("ANA", ana), ("BEN", ben), ("CHLOE", chloe)):
        text = text.replace(f"@{name}@", who.email)
    settings = on_store(backend.settings(text))
    wire = backend.wire
    # a tick with nothing new reads three calendars and lists two inboxes, Ana's and Chloe's
    quiet = Counter({wire.sync: 3}) if wire else Counter()
    if wire and wire.inbox:
        quiet[wire.inbox] += 2

    with Engine(settings, retry=RetryPolicy.none()) as engine:
        assert done(engine.tick(NOW)) == ["recap"]
        (recap,) = mails(backend)
        assert recap["From"].endswith(f"<{ana.email}>") and ben.email in recap["To"]

        ref = backend.deliver(
            ana, answer(f"{ben.name} <{ben.email}>", ana.email, recap["Message-ID"])
        )
        asked = Requests(backend)
        second = engine.tick(NOW + timedelta(minutes=10))
        assert done(second) == ["reply", "update"], [
            (r["status"], r["reason"]) for r in engine.store.replies()
        ]
        if wire:
            assert asked.since() == quiet + wire.read_reply
        store = engine.store
        (row,) = store.replies(status="recorded")
        assert ref in row["ref"] and row["sender"] == ben.email
        (action,) = store.actions(ana.email)
        assert (action["title"], action["due"], action["status"]) == (
            "draft the proposal",
            "2026-12-15",
            "open",
        )

    recap_id = recap["Message-ID"]
    (update,) = [m for m in mails(backend) if m["Message-ID"] != recap_id]
    assert update["From"].endswith(f"<{ana.email}>") and update["Subject"].startswith(
        "Recap updated: "
    )
    assert update["In-Reply-To"] == REPLY_ID
    assert update["References"].split() == [recap_id, REPLY_ID]
    body = update.get_body(preferencelist=("plain",))
    assert body is not None and "draft the proposal" in body.get_content()

    # a new process goes on from what the store kept: the reply is not read again
    with Engine(settings, retry=RetryPolicy.none()) as engine:
        asked = Requests(backend)
        assert done(engine.tick(NOW + timedelta(minutes=20))) == []
        if wire:
            assert asked.since() == quiet + wire.sign_in(3)
        assert len(engine.store.replies()) == 1
    assert len(mails(backend)) == 2
