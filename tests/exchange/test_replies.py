"""Replies to recaps on EWS: the inbox listed by arrival time, the MIME of each new
message from someone Cadence mails, and the whole loop in ticks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from agent.connectors.base import ReplyReader
from agent.connectors.exchange import Ews, ExchangeMailer, ExchangeReplyMailer
from agent.core.model import Person
from agent.core.retry import RetryPolicy
from agent.settings import config
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests import programs
from tests.exchange.fixtures import ACCOUNT_SETTINGS, PASSWORD_ENV, people, server_for
from tests.exchange.fixtures import workspace as write_workspace
from tests.exchange.server import EwsServer, t

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
#: what the organization's mail gateway writes above a message it let in
PASSED = (
    "Authentication-Results: gw.contoso.example; spf=pass smtp.mailfrom=contoso.example;"
    " dkim=pass header.d=contoso.example; dmarc=pass header.from=contoso.example\r\n"
)


def reply(sender: str, to: str, parent: str, text: str, ident: str) -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = "Re: Recap"
    msg["Message-ID"] = ident
    msg["In-Reply-To"] = parent
    msg["References"] = parent
    msg.set_content(text)
    return PASSED.encode() + msg.as_bytes()


@pytest.fixture
def reader(ews: Ews, staff: list[Person]) -> ExchangeReplyMailer:
    emails = [p.email for p in staff]
    return ExchangeReplyMailer(ews, [emails[0], emails[2].upper()], emails, max_size=64 * 1024)


def operations(server: EwsServer) -> list[str]:
    return [r.operation for r in server.requests]


def test_a_delivered_reply_is_returned_once_with_its_mime(
    server: EwsServer, reader: ExchangeReplyMailer, staff: list[Person]
) -> None:
    ana, ben = staff[0].email, staff[1].email
    raw = reply(ben, ana, "<k1.recap@cadence>", "- [ ] one\r\n", "<r1@contoso.example>")
    item = server.deliver(ana, raw)
    assert isinstance(reader, ReplyReader) and not isinstance(ExchangeMailer, ReplyReader)

    [got] = reader.replies()

    assert got.ref == f"ews:{ana}/{item.id}" and got.whole
    assert got.raw == raw and got.length == len(raw)
    # one listing per inbox (Ana's and Chloe's); the new message's sender, then its MIME
    assert operations(server) == ["FindItem", "GetItem", "GetItem", "FindItem"]
    server.requests.clear()
    assert reader.replies() == []
    assert operations(server) == ["FindItem", "FindItem"]


def test_strangers_old_mail_and_other_inboxes_are_not_read(
    server: EwsServer, reader: ExchangeReplyMailer, staff: list[Person]
) -> None:
    ana, ben = staff[0].email, staff[1].email
    server.deliver(ana, reply("spam@elsewhere.example", ana, "<x@y>", "buy\r\n", "<s@x>"))
    old = datetime.now(UTC) - timedelta(days=40)
    server.deliver(ana, reply(ben, ana, "<x@y>", "late\r\n", "<old@x>"), old)
    server.deliver(ben, reply(ana, ben, "<x@y>", "hi\r\n", "<b@x>"))  # not a watched inbox

    assert reader.replies() == []
    # the stranger's message is known by its sender alone: its MIME is never fetched
    [get] = [r for r in server.requests if r.operation == "GetItem"]
    assert {f.get("FieldURI") for f in get.body.iter(t("FieldURI"))} == {"message:Sender"}


def test_the_listing_asks_for_arrival_and_size_since_the_mark(
    server: EwsServer, reader: ExchangeReplyMailer, staff: list[Person]
) -> None:
    ana, ben = staff[0].email, staff[1].email
    received = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    item = server.deliver(ana, reply(ben, ana, "<k@c>", "hi\r\n", "<r@x>"), received)
    assert len(reader.replies()) == 1
    marks = reader.marks()
    assert marks[ana] == received.strftime("%Y-%m-%dT%H:%M:%SZ")

    # a new process resumes from the mark kept in the store: a day before it
    again = ExchangeReplyMailer(reader.ews, [ana], [ben])
    again.resume(marks)
    server.requests.clear()
    assert [m.ref for m in again.replies()] == [f"ews:{ana}/{item.id}"]
    [find] = [r for r in server.requests if r.operation == "FindItem"]
    shape = find.body.findall(f".//{t('AdditionalProperties')}/{t('FieldURI')}")
    fields = {f.get("FieldURI") for f in shape}
    assert fields == {"item:DateTimeReceived", "item:Size"}
    constant = find.body.find(f".//{t('IsGreaterThanOrEqualTo')}//{t('Constant')}")
    assert constant is not None
    since = datetime.fromisoformat(constant.get("Value", "").replace("Z", "+00:00"))
    assert since == received - timedelta(days=1)


def test_an_oversized_reply_is_read_by_its_header_fields_only(
    server: EwsServer, reader: ExchangeReplyMailer, staff: list[Person]
) -> None:
    ana, ben = staff[0].email, staff[1].email
    huge = reply(ben, ana, "<k1.recap@cadence>", "- [ ] one\n" + "y" * 200_000, "<big@x>")
    server.deliver(ana, huge)

    [got] = reader.replies()

    assert not got.whole and got.length == len(huge)
    header = message_from_bytes(got.raw, policy=policy.default)
    assert header["Message-ID"] == "<big@x>" and header["In-Reply-To"] == "<k1.recap@cadence>"
    assert "dmarc=pass" in str(header["Authentication-Results"])
    assert b"yyyy" not in got.raw
    [_, get] = [r for r in server.requests if r.operation == "GetItem"]
    fields = {f.get("FieldURI") for f in get.body.iter(t("FieldURI"))}
    assert fields == {"item:InternetMessageHeaders"}


def test_a_message_gone_before_it_is_read_is_skipped_and_a_failed_listing_reads_again(
    server: EwsServer,
    reader: ExchangeReplyMailer,
    staff: list[Person],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ana, ben = staff[0].email, staff[1].email
    one = server.deliver(ana, reply(ben, ana, "<k@c>", "one\r\n", "<one@x>"))
    listing = reader._list

    def then_deleted(box: str, inbox: Any, since: datetime) -> list[Any]:
        found = listing(box, inbox, since)
        server.delete(ana, one.id)  # the person deletes it while Cadence reads
        return found

    monkeypatch.setattr(reader, "_list", then_deleted)
    assert reader.replies() == []
    monkeypatch.undo()

    server.deliver(ana, reply(ben, ana, "<k@c>", "two\r\n", "<two@x>"))
    server.fail("FindItem", "ErrorAccessDenied")
    with pytest.raises(Exception, match="ErrorAccessDenied"):
        reader.replies()
    # nothing of the failed call was marked read: the second message comes now
    got = reader.replies()
    assert [message_from_bytes(m.raw)["Message-ID"] for m in got] == ["<two@x>"]


# --- the whole loop in ticks -------------------------------------------------------------

CONFIG = programs.config(
    "onprem",
    ACCOUNT_SETTINGS,
    programs.leader_cycle(
        conference=False,
        recap="{{after: 2h, within: 7d, collect_replies: true, backfill: 1d,"
        " authserv_ids: [gw.contoso.example]}}",
    ),
)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EwsServer, Path]]:
    staff = people()
    ana, ben, chloe = staff
    with server_for(staff) as server:
        path = write_workspace(server, tmp_path, CONFIG, PASSWORD_ENV, monkeypatch.setenv)
        # Ana and Ben held a deep dive yesterday: its recap is due. Chloe met Ben lately.
        held = NOW - timedelta(days=1)
        server.add_event(
            ana.email, "Development Align: Ana & Ben", held, held + timedelta(hours=1), [ben.email]
        )
        recent = NOW - timedelta(days=20)
        server.add_event(
            chloe.email, "Deep dive: Chloe & Ben", recent, recent + timedelta(hours=1), [ben.email]
        )
        yield server, path


def test_without_collect_replies_no_inbox_is_listed(
    workspace: tuple[EwsServer, Path], tmp_path: Path
) -> None:
    server, path = workspace
    path.write_text(path.read_text().replace("collect_replies: true", "collect_replies: false"))
    with Engine(config.load(path), store=Store(tmp_path / "r.db"), retry=RetryPolicy.none()) as e:
        assert e.tick(NOW).ok
    folders = {
        d.get("Id")
        for r in server.requests
        if r.operation == "FindItem"
        for d in r.body.iter(t("DistinguishedFolderId"))
    }
    assert folders == {"calendar"}
