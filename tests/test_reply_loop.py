"""The loop through mail: recap → reply in the inbox → actions in the store → the updated
recap to the leader → the next agenda."""

from __future__ import annotations

import email
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from agent.app.demo import write_reply
from agent.core.model import OutgoingMail, SentMail
from agent.rules.mailplan import message_id
from agent.settings import config
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests.conftest import NOW


def read(path: str | Path) -> EmailMessage:
    msg = email.message_from_bytes(Path(path).read_bytes(), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def emma_recap(store: Store) -> dict[str, str]:
    return next(
        r
        for r in store.outbox_rows()
        if r["kind"] == "recap" and r["relationship"] == "emma@acme.example/ben@acme.example"
    )


def add_check_in(settings: config.Settings, hours: int) -> None:
    """Put a check-in for Emma and Ben on both calendars, ``hours`` from NOW."""
    start = (NOW + timedelta(hours=hours)).strftime("%Y%m%dT%H%M%SZ")
    end = (NOW + timedelta(hours=hours, minutes=15)).strftime("%Y%m%dT%H%M%SZ")
    block = (
        "BEGIN:VEVENT\r\nUID:checkin-emma@acme.example\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART:{start}\r\nDTEND:{end}\r\nSUMMARY:Development check-in: Emma & Ben\r\n"
        "ORGANIZER:mailto:emma@acme.example\r\n"
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:emma@acme.example\r\n"
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:ben@acme.example\r\nEND:VEVENT\r\n"
    )
    for who in ("emma", "ben"):
        path = settings.base / "calendars" / f"{who}@acme.example.ics"
        data = path.read_text()
        path.write_text(data.replace("END:VCALENDAR", block + "END:VCALENDAR", 1))


def test_reply_is_recorded_and_the_leader_gets_the_updated_recap(
    settings: config.Settings, tmp_path: Path
) -> None:
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        engine.tick(NOW)
        recap = emma_recap(store)
        sent = read(recap["location"])
        assert sent["Message-ID"] == recap["message_id"]  # the header is the stored id
        reply_path = write_reply(settings.base / "inbox", Path(recap["location"]), NOW)
        add_check_in(settings, hours=20)  # so the next agenda is due in this tick
        report = engine.tick(NOW + timedelta(minutes=10))
        again = engine.tick(NOW + timedelta(minutes=20))

    [reply] = store.replies(status="recorded")
    assert reply["meeting"] == recap["meeting"] and reply["sender"] == "emma@acme.example"
    actions = {a["title"]: a for a in store.actions("emma@acme.example")}
    assert actions["ask two peers for feedback on the retros"]["status"] == "done"
    assert actions["ask two peers for feedback on the retros"]["done_at"]
    budget = actions["draft a budget for the mobile team"]
    assert budget["status"] == "open" and budget["goal"] == "Move into engineering management"
    assert budget["due"] == (NOW + timedelta(days=70)).date().isoformat()
    assert "reading list" not in " ".join(actions)  # nothing from the quoted recap

    update = next(r for r in store.outbox_rows() if r["kind"] == "update")
    assert update["status"] == "sent"
    mail = read(update["location"])
    reply_id = read(reply_path)["Message-ID"]
    assert mail["To"] == "ben@acme.example, emma@acme.example"
    assert mail["Subject"].startswith("Recap updated: Development Advance with Ben, ")
    assert mail["In-Reply-To"] == reply_id
    assert mail["References"].split() == [recap["message_id"], reply_id]
    assert mail["Message-ID"] == message_id(update["key"], store.mail_secret)
    body = text(mail)
    assert "Emma Clarke replied on" in body
    assert "- [x] ask two peers for feedback on the retros" in body.split("Completed")[1]
    assert "want fewer action items" in body

    agenda = next(
        r
        for r in store.outbox_rows()
        if r["kind"] == "agenda" and r["relationship"] == "emma@acme.example/ben@acme.example"
    )
    agenda_text = text(read(agenda["location"]))
    assert agenda["subject"].startswith("Agenda: Development check-in with Ben, ")
    opened = agenda_text.split("Open actions")[1].split("Completed since the last recap")[0]
    assert "draft a budget for the mobile team" in opened
    assert "shadow Priya's one-on-ones for a month" in opened
    assert "ask two peers" in agenda_text.split("Completed since the last recap")[1]

    assert [a.kind for a in report.actions if a.outcome == "done"].count("update") == 1
    assert not [a for a in again.actions if a.kind in ("reply", "update", "recap", "agenda")]
    assert len(list((settings.base / "outbox").glob("*update*.eml"))) == 1


def test_replies_from_strangers_or_to_other_mail_are_ignored(
    settings: config.Settings, tmp_path: Path
) -> None:
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        engine.tick(NOW)
        recap = emma_recap(store)
        inbox = settings.base / "inbox"
        stranger = write_reply(inbox, Path(recap["location"]), NOW)
        data = stranger.read_bytes().replace(
            b"From: Emma Clarke <emma@acme.example>", b"From: Eve <eve@evil.example>"
        )
        stranger.rename(inbox / "eve.eml")
        (inbox / "eve.eml").write_bytes(data)
        (inbox / "newsletter.eml").write_bytes(
            b"From: news@example.org\r\nMessage-ID: <n1@example.org>\r\nSubject: hi\r\n\r\n"
            b"- [ ] buy our product\r\n"
        )
        engine.tick(NOW + timedelta(minutes=10))
    rows = {r["message_id"]: r for r in store.replies()}
    assert {r["status"] for r in rows.values()} == {"ignored"}
    assert (
        "eve@evil.example is not in"
        in rows["<reply-202611231400.emma@mail.acme.example>"]["reason"]
    )
    assert rows["<n1@example.org>"]["reason"] == "not a reply to a recap"
    assert store.actions("emma@acme.example") == []
    assert not [r for r in store.outbox_rows() if r["kind"] == "update"]


def test_replies_are_not_read_unless_the_program_opts_in(workspace: Path, tmp_path: Path) -> None:
    workspace.write_text(
        workspace.read_text().replace("collect_replies: true", "collect_replies: false")
    )
    settings = config.load(workspace)
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        engine.tick(NOW)
        write_reply(settings.base / "inbox", Path(emma_recap(store)["location"]), NOW)
        engine.tick(NOW + timedelta(minutes=10))
    assert store.replies() == [] and store.actions("emma@acme.example") == []


def test_dry_run_reads_but_records_nothing(settings: config.Settings, tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        engine.tick(NOW)
        write_reply(settings.base / "inbox", Path(emma_recap(store)["location"]), NOW)
        report = engine.tick(NOW + timedelta(minutes=10), dry_run=True)
    planned = [a for a in report.actions if a.kind == "reply"]
    assert planned and planned[0].outcome == "planned"
    assert store.replies() == [] and store.actions("emma@acme.example") == []


def test_an_update_that_failed_to_send_goes_out_at_the_next_tick_once(
    settings: config.Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.connectors import local
    from agent.core.errors import TransientError

    real = local.OutboxMailer.send
    failures = []

    def flaky(self: local.OutboxMailer, mail: OutgoingMail) -> SentMail:
        if ":update:" in mail.key and not failures:
            failures.append(mail.key)
            raise TransientError("429 throttled", retry_after=60, maybe_done=False)
        return real(self, mail)

    monkeypatch.setattr(local.OutboxMailer, "send", flaky)
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        engine.tick(NOW)
        write_reply(settings.base / "inbox", Path(emma_recap(store)["location"]), NOW)
        failed = engine.tick(NOW + timedelta(minutes=10))
        assert failures and any("updated recap" in e for e in failed.errors)
        assert store.actions("emma@acme.example")  # recorded although the mail failed
        engine.tick(NOW + timedelta(minutes=20))
        engine.tick(NOW + timedelta(minutes=30))
    rows = [r for r in store.outbox_rows() if r["kind"] == "update"]
    assert [r["status"] for r in rows] == ["sent"]
    assert len(list((settings.base / "outbox").glob("*update*.eml"))) == 1
    assert len(store.replies()) == 1
