"""Replies to recaps read from Gmail inboxes (gmail.readonly), alone and in the whole loop."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from agent.connectors import google
from agent.connectors.base import IncomingMail, ReplyReader
from agent.core.errors import PermanentError, TransientError
from agent.core.model import OutgoingMail
from agent.core.retry import RetryPolicy
from agent.settings import config
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests.google.harness import Workspace, workspace, write_secret

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday
ANA, BEN, CHLOE = "ana@acme.example", "ben@acme.example", "chloe@acme.example"
GET, LIST = "gmail.users.messages.get", "gmail.users.messages.list"
PROGRAMS = """\
relationships:
  - {employee: ana@acme.example, partner: ben@acme.example, role: leader, program: leader-cycle}
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
    agenda: {before: 24h}
    recap: {after: 2h, collect_replies: true, backfill: 1d}
"""


def note(sender: str, to: str, message_id: str, text: str, **headers: str) -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"], msg["To"], msg["Subject"] = sender, to, headers.pop("subject", "Hello")
    msg["Date"] = "Mon, 23 Nov 2026 15:00:00 +0000"
    msg["Message-ID"] = message_id
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(text)
    return msg.as_bytes()


def reader(ws: Workspace) -> google.GoogleReplyMailer:
    _, mailer = ws.connect()
    assert isinstance(mailer, google.GoogleReplyMailer)
    return mailer


@pytest.fixture
def collecting(tmp_path: Path) -> Iterator[Workspace]:
    with workspace(tmp_path, rest=PROGRAMS) as space:
        yield space


def test_a_delivered_message_is_returned_once_then_only_the_list_is_asked(
    collecting: Workspace,
) -> None:
    state = collecting.server.state
    raw = note(BEN, ANA, "<r1@acme.example>", "- [ ] one\n")
    got = state.deliver(ANA, raw)
    state.deliver(ANA, note(BEN, ANA, "<old@acme.example>", "old"), at=NOW - timedelta(days=40))
    state.deliver(CHLOE, note(BEN, CHLOE, "<c1@acme.example>", "not an employee's"))
    mailer = reader(collecting)
    try:
        assert isinstance(mailer, ReplyReader) and mailer.mailboxes == [ANA]
        mailer.send(  # Ana's own sent mail is not in her inbox
            OutgoingMail(
                key="k:recap",
                sender=ANA,
                to=(BEN,),
                subject="Recap",
                text="x",
                html="<p>x</p>",
                message_id="<k.recap@cadence>",
            )
        )
        before = Counter(state.counts)
        first = mailer.replies()
        assert first == [IncomingMail(f"gmail:{ANA}/{got.id}", got.raw, len(got.raw))]
        assert got.raw.startswith(b"Authentication-Results: mx.google.com;") and raw in got.raw
        # its size and header fields, then the message itself
        assert +(Counter(state.counts) - before) == Counter({LIST: 1, GET: 2})

        before = Counter(state.counts)
        assert mailer.replies() == []
        assert +(Counter(state.counts) - before) == Counter({LIST: 1})

        later = state.deliver(ANA, note(BEN, ANA, "<r2@acme.example>", "again"))
        assert [m.ref for m in mailer.replies()] == [f"gmail:{ANA}/{later.id}"]
    finally:
        mailer.close()


def test_all_pages_are_read_gets_batched_and_a_message_gone_since_the_list_skipped(
    collecting: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(google.replies, "REPLY_PAGE", 2)
    state = collecting.server.state
    ids = [
        state.deliver(ANA, note(BEN, ANA, f"<p{n}@acme.example>", str(n)), NOW + timedelta(n)).id
        for n in range(5)
    ]
    state.fail(GET, 404, "notFound")  # the newest was deleted between list and get
    mailer = reader(collecting)
    try:
        found = mailer.replies()
        assert [m.ref.rsplit("/", 1)[1] for m in found] == ids[::-1][1:]
        # three pages of two, then five metadata gets in one HTTP batch, and the four
        # messages still there in another
        assert state.counts[LIST] == 3 and state.counts[GET] == 9 and state.counts["batch"] == 2
        assert mailer.replies() == []
    finally:
        mailer.close()


@pytest.mark.parametrize("count", [1, 3])
def test_other_failures_of_a_get_are_raised_and_the_messages_read_later(
    collecting: Workspace, count: int
) -> None:
    state = collecting.server.state
    for n in range(count):
        state.deliver(ANA, note(BEN, ANA, f"<r{n}@acme.example>", "hi"))
    state.fail(GET, 503, "backendError")
    mailer = reader(collecting)
    try:
        with pytest.raises(TransientError):
            mailer.replies()
        assert len(mailer.replies()) == count
        assert mailer.replies() == []
    finally:
        mailer.close()


def test_fake_gmail_answers_get_like_gmail(collecting: Workspace) -> None:
    state = collecting.server.state
    got = state.deliver(ANA, note(BEN, ANA, "<r1@acme.example>", "hi", subject="Re: Recap"))
    mailer = reader(collecting)
    try:
        meta = mailer.c.execute(
            mailer.messages.get(
                userId="me", id=got.id, format="metadata", metadataHeaders=["Subject"]
            ),
            ANA,
        )
        assert meta["labelIds"] == ["INBOX", "UNREAD"] and meta["threadId"] == got.thread_id
        assert meta["payload"]["headers"] == [{"name": "Subject", "value": "Re: Recap"}]
        with pytest.raises(PermanentError, match="not found"):
            mailer.c.execute(mailer.messages.get(userId="me", id="0123abcd", format="raw"), ANA)
        with pytest.raises(PermanentError, match="Delegation denied"):  # not Ben's to read
            mailer.c.execute(mailer.messages.get(userId=BEN, id=got.id, format="raw"), ANA)
    finally:
        mailer.close()


def test_without_the_read_scope_the_mailer_is_no_reply_reader(tmp_path: Path) -> None:
    rest = PROGRAMS.replace("collect_replies: true", "collect_replies: false")
    with workspace(tmp_path, rest=rest, delegated=google.scopes_for(False)) as ws:
        ws.server.state.deliver(ANA, note(BEN, ANA, "<r1@acme.example>", "- [ ] one\n"))
        _, mailer = ws.connect()
        try:
            assert not isinstance(mailer, ReplyReader) and not hasattr(mailer, "replies")
        finally:
            mailer.close()
        store = Store(tmp_path / "t.db")
        with Engine(ws.settings, store=store, retry=RetryPolicy.none()) as engine:
            report = engine.tick(NOW)
        assert report.ok, report.errors
        assert ws.server.state.counts[GET] == 0 and ws.server.state.counts[LIST] == 0
        assert store.replies() == []


# --- the whole loop ----------------------------------------------------------------------


def parsed(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_a_user_token_reads_its_owners_inbox_once(tmp_path: Path) -> None:
    with workspace(tmp_path, rest=PROGRAMS) as ws:
        user = ws.server.state.add_user(ANA, set(google.scopes_for(True)))
        write_secret(
            tmp_path / "token.json",
            {
                "type": "authorized_user",
                "client_id": user.client_id,
                "client_secret": user.client_secret,
                "refresh_token": user.refresh_token,
                "token_uri": ws.server.token_uri,
                "scopes": google.scopes_for(True),
            },
        )
        ws.path.write_text(
            ws.path.read_text().replace("credentials: key.json", "credentials: token.json")
        )
        ws.settings = config.load(ws.path)
        got = ws.server.state.deliver(ANA, note(BEN, ANA, "<r1@acme.example>", "hi"))
        mailer = reader(ws)
        try:
            assert mailer.mailboxes == ["me"]
            assert [m.ref for m in mailer.replies()] == [f"gmail:me/{got.id}"]
            assert mailer.replies() == []
        finally:
            mailer.close()


# --- hostile replies: forged senders, oversized mail; a restart does not read again ------


def recap_and_engine_tick(srv: object, engine: Engine) -> str:
    held = NOW - timedelta(hours=3)
    srv.add_event(ANA, "Development check-in: Ana & Ben", held, held + timedelta(minutes=15), [BEN])  # type: ignore[attr-defined]
    first = engine.tick(NOW)
    assert first.ok, first.errors
    (recap,) = [s for s in srv.state.sent if s.message["Subject"].startswith("Recap")]  # type: ignore[attr-defined]
    return str(recap.message["Message-ID"])


def test_a_forged_from_is_refused_and_an_authenticated_reply_recorded(
    collecting: Workspace, tmp_path: Path
) -> None:
    srv = collecting.server
    store = Store(tmp_path / "t.db")
    with Engine(collecting.settings, store=store, retry=RetryPolicy.none()) as engine:
        recap_id = recap_and_engine_tick(srv, engine)
        forged = note(
            f"Ben Ortiz <{BEN}>",
            ANA,
            "<forged@evil.example>",
            "- [x] everything is done\n",
            In_Reply_To=recap_id,
            Sender="Mallory <mallory@evil.example>",
            Return_Path="<bounce@evil.example>",
        )
        srv.state.deliver(ANA, forged, authenticated=False)
        engine.tick(NOW + timedelta(minutes=10))
        assert store.actions(ANA) == []
        [row] = store.replies()
        assert row["status"] == "refused"
        assert row["reason"] == "ben@acme.example failed DMARC (dmarc=fail); the From may be forged"
        [audit] = [a for a in store.audit_rows(kind="reply") if "refused" in a["message"]]
        assert audit["relationship"] == f"{ANA}/{BEN}"

        genuine = note(
            f"Ben Ortiz <{BEN}>", ANA, "<ok@acme.example>", "- [ ] one\n", In_Reply_To=recap_id
        )
        srv.state.deliver(ANA, genuine)
        engine.tick(NOW + timedelta(minutes=20))
    assert [a["title"] for a in store.actions(ANA)] == ["one"]


def test_an_oversized_reply_is_refused_from_its_header_without_fetching_it(
    tmp_path: Path,
) -> None:
    rest = PROGRAMS.replace("collect_replies: true", "collect_replies: true, max_reply_size: 64KB")
    with workspace(tmp_path, rest=rest) as ws:
        srv = ws.server
        store = Store(tmp_path / "t.db")
        with Engine(ws.settings, store=store, retry=RetryPolicy.none()) as engine:
            recap_id = recap_and_engine_tick(srv, engine)
            huge = note(
                f"Ben Ortiz <{BEN}>",
                ANA,
                "<huge@acme.example>",
                "- [ ] one\n" + "x" * 300_000,
                In_Reply_To=recap_id,
            )
            srv.state.deliver(ANA, huge)
            before = srv.state.counts[GET]
            engine.tick(NOW + timedelta(minutes=10))
            assert srv.state.counts[GET] - before == 1  # the metadata; never the message
        [row] = store.replies()
        assert row["status"] == "refused" and "over recap.max_reply_size (64 KB)" in row["reason"]
        assert store.actions(ANA) == []


def test_a_restart_goes_on_from_the_high_water_mark_in_the_store(
    collecting: Workspace, tmp_path: Path
) -> None:
    state = collecting.server.state
    old = state.deliver(ANA, note(BEN, ANA, "<r1@acme.example>", "hi"), at=NOW - timedelta(days=5))
    new = state.deliver(ANA, note(BEN, ANA, "<r2@acme.example>", "hi"), at=NOW - timedelta(days=1))
    store = Store(tmp_path / "t.db")
    with Engine(collecting.settings, store=store, retry=RetryPolicy.none()) as engine:
        engine.tick(NOW)
    marks = store.reply_marks("acme")
    assert marks == {ANA: str(int(new.at.timestamp() * 1000))}
    assert {r["ref"] for r in store.replies()} == {f"gmail:{ANA}/{old.id}", f"gmail:{ANA}/{new.id}"}

    before = state.counts[GET]
    with Engine(collecting.settings, store=store, retry=RetryPolicy.none()) as engine:
        engine.tick(NOW + timedelta(minutes=10))
    # listed from a day before the newest message read: the five-day-old one is not
    # listed, the newest (inside the day of slack) is, but the store says it was read
    assert state.counts[GET] - before == 0
    assert store.reply_marks("acme") == marks
