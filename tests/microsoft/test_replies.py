"""Replies to recaps on Graph: the inbox listing and the MIME of each new message, read
with Mail.Read only when a program collects replies, and the whole loop in ticks."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from agent.connectors.base import ReplyReader
from agent.connectors.microsoft import Graph, MicrosoftMailer, delegated_scopes, device_code_login
from agent.core.errors import PermanentError, TransientError
from agent.core.model import Person
from agent.core.retry import RetryPolicy
from agent.settings import config
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests import programs
from tests.microsoft import fixtures
from tests.microsoft.fixtures import ACCOUNT_SETTINGS, add_deep_dives, people, write_config
from tests.microsoft.server import GraphServer
from tests.microsoft.test_tick import SECRET_ENV

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def reply(sender: str, to: str, parent: str, text: str, ident: str) -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = "Re: Recap"
    msg["Message-ID"] = ident
    msg["In-Reply-To"] = parent
    msg["References"] = parent
    msg.set_content(text)
    return msg.as_bytes()


@pytest.fixture
def reader(graph: Graph, staff: list[Person]) -> MicrosoftMailer:
    return MicrosoftMailer(graph, mailboxes=[staff[0].email, staff[2].email.upper()])


def test_replies_returns_a_delivered_message_once_and_not_again(
    server: GraphServer, reader: MicrosoftMailer, staff: list[Person]
) -> None:
    ana, ben = staff[0].email, staff[1].email
    raw = reply(ben, ana, "<k1.recap@cadence>", "- [ ] one\r\n", "<r1@contoso.example>")
    ident = server.deliver(ana, raw)
    assert isinstance(reader, ReplyReader)

    [got] = reader.replies()

    assert got.ref == f"graph:{ana}/{ident}"
    assert got.raw.startswith(b"Authentication-Results: spf=pass") and got.raw.endswith(raw)
    assert got.size == len(got.raw) and got.whole
    assert dict(server.counts) == {"token": 1, "openid": 1, "messages.list": 2, "messages.value": 1}
    server.reset_counts()
    assert reader.replies() == []
    assert dict(server.counts) == {"messages.list": 2}  # one listing per mailbox, no MIME
    later = server.deliver(ana, raw.replace(b"r1@", b"r2@"))
    assert [m.ref for m in reader.replies()] == [f"graph:{ana}/{later}"]


def test_old_mail_and_other_mailboxes_are_not_read(
    server: GraphServer, reader: MicrosoftMailer, staff: list[Person]
) -> None:
    ana, ben = staff[0].email, staff[1].email
    raw = reply(ben, ana, "<k1.recap@cadence>", "hi\r\n", "<r1@contoso.example>")
    server.deliver(ana, raw, received=datetime.now(UTC) - timedelta(days=31))
    server.deliver(ben, raw)  # Ben sends no mail of Cadence's: his inbox is not read
    assert reader.replies() == []
    assert server.counts["messages.value"] == 0
    assert [t for _, t in server.log if "/users/ben" in t] == []


def test_many_new_messages_are_read_across_pages(
    server: GraphServer, reader: MicrosoftMailer, staff: list[Person]
) -> None:
    chloe = staff[2].email
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    ids = {
        server.deliver(chloe, f"Message-ID: <m{i}@x>\r\n\r\nbody {i}\r\n".encode(), start)
        for i in range(120)
    }
    got = reader.replies()
    assert {m.ref.rsplit("/", 1)[1] for m in got} == ids and len(got) == 120
    assert server.counts["messages.list"] == 1 + 2  # Ana's inbox; Chloe's in pages of 100
    assert server.counts["messages.value"] == 120
    listing = [t for r, t in server.log if r == "messages.list" and "chloe" in t]
    assert "$skip=100" in listing[1]


def test_later_listings_start_a_day_before_the_newest_message_seen(
    server: GraphServer, graph: Graph, staff: list[Person]
) -> None:
    ana, ben = staff[0].email, staff[1].email
    reader = MicrosoftMailer(graph, mailboxes=[ana], senders=[ana, ben])
    now = datetime.now(UTC).replace(microsecond=0)
    reader.clock = lambda: now
    for i in range(150):  # a busy inbox: 150 messages over the last 25 days
        when = now - timedelta(days=25) + timedelta(hours=4 * i)
        server.deliver(
            ana, f"From: news@example.org\r\nMessage-ID: <n{i}@x>\r\n\r\n.".encode(), when
        )
    newest = now - timedelta(days=25) + timedelta(hours=4 * 149)
    assert reader.replies() == []  # nobody's reply: listed, never fetched
    assert server.counts["messages.list"] == 2 and server.counts["messages.value"] == 0
    server.reset_counts()
    raw = reply(ben, ana, "<k1.recap@cadence>", "- [x] done\r\n", "<r1@contoso.example>")
    ident = server.deliver(ana, raw, now)
    assert [m.ref for m in reader.replies()] == [f"graph:{ana}/{ident}"]
    [(_, target)] = server.log[:1]
    since = (newest - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"receivedDateTime ge {since}" in urllib.parse.unquote_plus(target)
    assert dict(server.counts) == {"messages.list": 1, "messages.value": 1}


def test_the_listing_has_graphs_shape_and_value_is_the_mime_as_text_plain(
    server: GraphServer, graph: Graph, staff: list[Person]
) -> None:
    ana = staff[0].email
    raw = reply(staff[1].email, ana, "<p@x>", "hello\r\n", "<r1@contoso.example>")
    ident = server.deliver(ana, raw)
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    page = graph.send(
        "GET",
        f"/users/{ana}/mailFolders/inbox/messages",
        params={"$filter": f"receivedDateTime ge {since}", "$select": "id,receivedDateTime"},
    ).json()
    [item] = page["value"]
    assert set(item) == {"@odata.etag", "id", "receivedDateTime"} and item["id"] == ident
    assert "@odata.nextLink" not in page
    mime = graph.send("GET", f"/users/{ana}/messages/{ident}/$value")
    assert mime.headers["Content-Type"].startswith("text/plain") and mime.content.endswith(raw)
    # the receiving server's field on top, as Exchange Online writes it (no authserv-id)
    assert mime.content.startswith(b"Authentication-Results: spf=pass (sender IP is ")
    sized = graph.send(
        "GET",
        f"/users/{ana}/mailFolders/inbox/messages",
        params={
            "$filter": f"receivedDateTime ge {since}",
            "$select": "id",
            "$expand": "singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')",
        },
    ).json()
    [item] = sized["value"]
    assert item["singleValueExtendedProperties"] == [
        {"id": "Integer 0xe08", "value": str(len(mime.content))}
    ]
    fields = graph.send(
        "GET", f"/users/{ana}/messages/{ident}", params={"$select": "internetMessageHeaders"}
    ).json()
    assert set(fields) == {"@odata.etag", "id", "internetMessageHeaders"}
    assert fields["internetMessageHeaders"][0]["name"] == "Authentication-Results"
    assert {"name": "Message-ID", "value": "<r1@contoso.example>"} in fields[
        "internetMessageHeaders"
    ]
    with pytest.raises(PermanentError, match="ErrorInvalidUrlQueryFilter"):
        graph.send(
            "GET",
            f"/users/{ana}/mailFolders/inbox/messages",
            params={"$filter": "subject eq 'x'"},
        )
    with pytest.raises(PermanentError, match="ErrorItemNotFound"):
        graph.send("GET", f"/users/{ana}/messages/AAMkADnope=/$value")


def test_without_mail_read_the_mime_is_refused_and_replies_raises(
    server: GraphServer, reader: MicrosoftMailer, staff: list[Person]
) -> None:
    server.app_permissions = {"Calendars.ReadWrite", "Mail.Send", "Mail.ReadBasic.All"}
    server.deliver(staff[0].email, b"Message-ID: <m@x>\r\n\r\nhi\r\n")
    with pytest.raises(PermanentError, match="403 ErrorAccessDenied"):
        reader.replies()
    assert server.counts["messages.list"] == 1  # the listing is allowed, the body is not


def test_a_single_person_asks_for_mail_read_only_when_replies_are_collected(
    server: GraphServer, ca: Path
) -> None:
    acct = fixtures.account(server, ca, graph="https://graph.microsoft.com")
    assert "Mail.Read" not in delegated_scopes(acct)
    assert delegated_scopes(acct, read_mail=True)[-1] == "Mail.Read"


# --- the whole loop in ticks -------------------------------------------------------------

# the tick's program without a video link, its recaps collecting replies
CONFIG = programs.config(
    "m365",
    ACCOUNT_SETTINGS,
    programs.leader_cycle(
        conference=False, recap="{{after: 2h, within: 7d, collect_replies: true, backfill: 1d}}"
    ),
)


@pytest.fixture
def workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[GraphServer, Path]]:
    staff = people()
    with GraphServer([p.email for p in staff]) as server:
        path = write_config(server, tmp_path, CONFIG, SECRET_ENV)
        monkeypatch.setenv(SECRET_ENV, server.client_secret or "")
        # Ana and Ben held a deep dive yesterday: its recap is due. Chloe met Ben lately.
        add_deep_dives(server, staff, NOW - timedelta(days=1), NOW - timedelta(days=20))
        yield server, path


def test_without_collect_replies_no_inbox_is_read(
    workspace: tuple[GraphServer, Path], tmp_path: Path
) -> None:
    server, path = workspace
    path.write_text(path.read_text().replace("collect_replies: true", "collect_replies: false"))
    with Engine(config.load(path), store=Store(tmp_path / "r.db"), retry=RetryPolicy.none()) as e:
        assert e.tick(NOW).ok
        e.tick(NOW + timedelta(minutes=10))
    assert server.counts["messages.list"] == 0 and server.counts["messages.value"] == 0


def test_a_failed_call_marks_nothing_read_and_the_next_call_returns_it(
    server: GraphServer,
    reader: MicrosoftMailer,
    staff: list[Person],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ana, chloe = staff[0].email, staff[2].email
    first = server.deliver(ana, b"Message-ID: <a@x>\r\n\r\nhi\r\n")
    server.deliver(chloe, b"Message-ID: <c@x>\r\n\r\nhi\r\n")
    real, failed = server.handle, []

    def flaky(method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        path = urllib.parse.unquote(target)
        if path.endswith("/$value") and chloe in path and not failed:
            failed.append(path)  # Chloe's MIME fails once, after Ana's was read
            return 503, {}, b'{"error": {"code": "ServiceUnavailable"}}'
        return real(method, target, headers, body)

    monkeypatch.setattr(server, "handle", flaky)
    with pytest.raises(TransientError):
        reader.replies()
    assert failed and server.counts["messages.value"] == 1  # Ana's was fetched
    got = reader.replies()
    assert f"graph:{ana}/{first}" in [m.ref for m in got] and len(got) == 2
    assert reader.replies() == []


@pytest.mark.parametrize("read_mail", [True, False])
def test_a_single_person_reads_only_their_own_inbox_and_only_with_mail_read(
    server: GraphServer, ca: Path, staff: list[Person], tmp_path: Path, read_mail: bool
) -> None:
    ana, chloe = staff[0].email, staff[2].email  # Ana is the person who signs in
    acct = fixtures.account(
        server, ca, client_secret_env=None, token_cache=str(tmp_path / "cache.json")
    )
    device_code_login(acct, Path, show=lambda _: server.approve_device_codes(), read_mail=read_mail)
    mine = server.deliver(ana, b"Message-ID: <a@x>\r\n\r\nhi\r\n")
    server.deliver(chloe, b"Message-ID: <c@x>\r\n\r\nhi\r\n")
    g = Graph(acct, Path, RetryPolicy.none(), environ={}, read_mail=read_mail)
    try:
        reader = MicrosoftMailer(g, mailboxes=[ana, chloe])
        if read_mail:
            assert [m.ref for m in reader.replies()] == [f"graph:{ana}/{mine}"]
        else:
            with pytest.raises(PermanentError, match="403 ErrorAccessDenied"):
                reader.replies()
    finally:
        g.close()
    assert [t for _, t in server.log if chloe in t] == []


# --- hostile replies: forged senders, oversized mail; a restart does not read again ------


def test_a_forged_from_is_refused_and_an_oversized_reply_never_fetched(
    workspace: tuple[GraphServer, Path], tmp_path: Path
) -> None:
    server, path = workspace
    path.write_text(
        path.read_text().replace(
            "collect_replies: true", "collect_replies: true, max_reply_size: 64KB"
        )
    )
    ana, ben = "ana@contoso.example", "ben@contoso.example"
    store = Store(tmp_path / "replies.db")
    with Engine(config.load(path), store=store, retry=RetryPolicy.none()) as engine:
        assert engine.tick(NOW).ok
        [recap] = server.sent
        forged = reply(f"Ben Ortiz <{ben}>", ana, recap["Message-ID"], "- [x] all\n", "<f@evil>")
        server.deliver(ana, b"Return-Path: <x@evil.example>\r\n" + forged, authenticated=False)
        huge = reply(ben, ana, recap["Message-ID"], "- [ ] one\n" + "y" * 200_000, "<big@x>")
        server.deliver(ana, huge)
        server.reset_counts()
        assert engine.tick(NOW + timedelta(minutes=10)).ok
        # the forged reply is read (it is small), the large one only by its header fields
        assert server.counts["messages.value"] == 1 and server.counts["messages.get"] == 1
    reasons = {r["message_id"]: r["reason"] for r in store.replies(status="refused")}
    assert reasons["<f@evil>"] == (
        "ben@contoso.example failed DMARC (dmarc=fail); the From may be forged"
    )
    assert "over recap.max_reply_size (64 KB); not read" in reasons["<big@x>"]
    assert store.actions(ana) == [] and len(server.sent) == 1
    audits = [a["message"] for a in store.audit_rows(kind="reply")]
    assert sum("refused" in a for a in audits) == 2


def test_a_restart_lists_from_the_mark_in_the_store(
    workspace: tuple[GraphServer, Path], tmp_path: Path
) -> None:
    server, path = workspace
    ana, ben = "ana@contoso.example", "ben@contoso.example"
    received = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    server.deliver(ana, reply(ben, ana, "<x@y>", "hi\n", "<old@x>"), received)
    store = Store(tmp_path / "replies.db")
    with Engine(config.load(path), store=store, retry=RetryPolicy.none()) as engine:
        assert engine.tick(NOW).ok
    assert store.reply_marks("m365")[ana] == received.strftime("%Y-%m-%dT%H:%M:%SZ")
    server.log.clear()
    with Engine(config.load(path), store=store, retry=RetryPolicy.none()) as engine:
        assert engine.tick(NOW + timedelta(minutes=10)).ok
    since = (received - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    listings = [t for _, t in server.log if "mailFolders" in t and ana.split("@")[0] in t]
    assert listings and f"receivedDateTime ge {since}" in urllib.parse.unquote_plus(listings[0])
