"""Replies to recaps read over IMAP from a real Dovecot, with Radicale and aiosmtpd: the
reply is recorded and answered by an updated recap; a forged sender and an oversized
reply are refused; a restart goes on from the UID mark kept in the store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from agent.connectors.smtp import ImapReader, ImapReplyMailer
from agent.core.retry import RetryPolicy
from agent.settings import config
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests.caldav.servers import DOVECOT, Dovecot, Radicale, SmtpSink
from tests.caldav.test_end_to_end import PROGRAMS, meeting
from tests.connectors.backends.caldav import PASSWORD_ENV, write_config

pytestmark = pytest.mark.skipif(
    DOVECOT is None, reason="Dovecot is not installed (Debian: apt-get install dovecot-imapd)"
)

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
ANA, BEN = "ana@example.org", "ben@example.org"
PASS = (
    "mx.example.org; spf=pass smtp.mailfrom=ben@example.org; "
    "dkim=pass header.d=example.org; dmarc=pass header.from=example.org"
)
FORGED = (
    "mx.example.org; spf=fail smtp.mailfrom=bounce@evil.example; "
    "dmarc=fail (p=reject) header.from=example.org"
)


def answer(parent: str, ident: str, text: str, results: str | None = PASS) -> bytes:
    """Ben's reply as the receiving server files it, its Authentication-Results on top."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"Ben Example <{BEN}>"
    msg["To"] = ANA
    msg["Subject"] = "Re: Recap"
    msg["Message-ID"] = ident
    msg["In-Reply-To"] = parent
    msg["References"] = parent
    msg.set_content(text)
    top = f"Authentication-Results: {results}\r\n".encode() if results else b""
    return top + msg.as_bytes()


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with Dovecot() as server:
        yield server


def test_mails_answering_cadence_are_read_once_and_large_ones_by_their_header(
    dovecot: Dovecot,
) -> None:
    reader = ImapReader(
        "127.0.0.1",
        dovecot.port,
        ssl_mode="plain",
        username=dovecot.credentials[0],
        password=dovecot.credentials[1],
        retry=RetryPolicy.none(),
    )
    dovecot.deliver(answer("<k1.recap@cadence>", "<r1@x>", "- [ ] one\n"))
    dovecot.deliver(answer("<elsewhere@example.org>", "<other@x>", "not ours\n"))
    dovecot.deliver(answer("<k1.recap@cadence>", "<big@x>", "z" * 50_000))
    since = date(2026, 11, 1)
    found, mark = reader.mails(since, None, 10_000, "@cadence>")
    assert [(m.whole, b"Message-ID: <r1@x>" in m.raw) for m in found] == [
        (True, True),
        (False, False),
    ]
    small, big = found
    assert small.size == len(small.raw) and small.raw.endswith(b"- [ ] one\r\n")
    assert big.size is not None and big.size > 50_000
    assert b"Message-ID: <big@x>" in big.raw and b"zzzz" not in big.raw
    assert mark is not None and mark.endswith(":3")
    assert reader.mails(since, mark, 10_000, "@cadence>") == ([], mark)
    dovecot.deliver(answer("<k1.recap@cadence>", "<r2@x>", "- [x] one\n"))
    again, later = reader.mails(since, mark, 10_000, "@cadence>")
    assert [b"<r2@x>" in m.raw for m in again] == [True] and later.endswith(":4")  # type: ignore[union-attr]
    # a mark of another UIDVALIDITY (the folder was recreated) reads the folder again
    assert len(reader.mails(since, "1:4", 10_000, "@cadence>")[0]) == 3


def test_recap_replies_over_imap_through_the_engine(
    tmp_path: Path,
    radicale: Radicale,
    smtp: SmtpSink,
    dovecot: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for user in ("ana", "ben", "chloe"):
        radicale.make_calendar(user)
    meeting(radicale, "check-1", "Development check-in: Ana & Ben", NOW - timedelta(hours=3), 15)
    meeting(radicale, "align-1", "Development Align: Ana & Ben", NOW - timedelta(days=20), 60)
    monkeypatch.setenv(PASSWORD_ENV, "e2e-secret")
    monkeypatch.setenv("CADENCE_TEST_IMAP_PASSWORD", dovecot.credentials[1])
    account_extra = (
        f"    imap: {{host: 127.0.0.1, port: {dovecot.port}, ssl: false, starttls: false, "
        f"username: {dovecot.credentials[0]}, password_env: CADENCE_TEST_IMAP_PASSWORD}}\n"
    )
    programs = (
        PROGRAMS
        + "    recap: {after: 2h, collect_replies: true, max_reply_size: 64KB, backfill: 1d}\n"
    )
    path = write_config(
        tmp_path / "cadence.yaml", radicale, smtp, extra=programs, account_extra=account_extra
    )
    settings = config.load(path)
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store, retry=RetryPolicy.none()) as engine:
        _, mailer = engine.connection("team")
        assert isinstance(mailer, ImapReplyMailer)
        first = engine.tick(NOW)
        assert first.errors == []
        [recap] = [m for m in smtp.messages() if str(m["Subject"]).startswith("Recap")]
        parent = str(recap["Message-ID"])

        dovecot.deliver(answer(parent, "<forged@evil.example>", "- [x] all\n", FORGED))
        dovecot.deliver(answer(parent, "<big@example.org>", "- [ ] a\n" + "q" * 100_000))
        dovecot.deliver(answer(parent, "<re1@example.org>", "- [ ] draft the proposal\n"))
        second = engine.tick(NOW + timedelta(minutes=10))
        assert second.errors == []
    status = {r["message_id"]: (r["status"], r["reason"]) for r in store.replies()}
    assert status["<re1@example.org>"] == ("recorded", None)
    assert status["<forged@evil.example>"][0] == "refused"
    assert "failed DMARC" in status["<forged@evil.example>"][1]
    assert "over recap.max_reply_size (64 KB)" in status["<big@example.org>"][1]
    assert [a["title"] for a in store.actions(ANA)] == ["draft the proposal"]
    updates = [m for m in smtp.messages() if str(m["Subject"]).startswith("Recap updated")]
    assert len(updates) == 1 and updates[0]["In-Reply-To"] == "<re1@example.org>"
    [mark] = store.reply_marks("team").values()
    assert mark.endswith(":3")

    # a restart goes on from the mark: nothing is read or sent again
    dovecot.deliver(answer(parent, "<re2@example.org>", "- [x] draft the proposal\n"))
    with Engine(settings, store=store, retry=RetryPolicy.none()) as engine:
        third = engine.tick(NOW + timedelta(minutes=20))
    assert third.errors == []
    assert [r["message_id"] for r in store.replies()][-1] == "<re2@example.org>"
    assert store.reply_marks("team") == {next(iter(store.reply_marks("team"))): mark[:-1] + "4"}
    assert len([m for m in smtp.messages() if str(m["Subject"]).startswith("Recap upd")]) == 2
