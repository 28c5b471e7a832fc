"""Hostile replies to recaps on the local provider: forged senders, oversized mail, floods
of action lines and of replies. Each refusal is an audit row with its reason and records
nothing; the same rules run for every provider (the Gmail, Graph and IMAP readers are
tested in their own folders)."""

from __future__ import annotations

import email
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest

from agent.app.demo import write_reply
from agent.connectors.local import OutboxMailer
from agent.core.errors import ConfigError
from agent.settings import config
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests.conftest import NOW
from tests.test_reply_loop import emma_recap

EMMA = "emma@acme.example"
REL = "emma@acme.example/ben@acme.example"

PASS = (
    "mx.acme.example; spf=pass smtp.mailfrom=emma@acme.example; "
    "dkim=pass header.d=acme.example; dmarc=pass (p=reject) header.from=acme.example"
)
FORGED = (
    "mx.acme.example; spf=fail (mx.acme.example: 203.0.113.9 is not permitted) "
    "smtp.mailfrom=bounce@evil.example; dkim=none; dmarc=fail (p=reject) header.from=acme.example"
)


def configure(workspace: Path, recap: str) -> config.Settings:
    text = workspace.read_text()
    demo = "recap: {after: 2h, collect_replies: true, backfill: 1d}"
    assert demo in text
    workspace.write_text(text.replace(demo, recap.replace("}", ", backfill: 1d}", 1)))
    return config.load(workspace)


def with_headers(path: Path, *lines: str) -> bytes:
    """Put header lines on top of a mail file, as a receiving server adds its own."""
    data = "".join(f"{line}\r\n" for line in lines).encode() + path.read_bytes()
    path.write_bytes(data)
    return data


def reply(settings: config.Settings, store: Store, name: str, *lines: str) -> Path:
    inbox = settings.base / "inbox"
    path = write_reply(inbox, Path(emma_recap(store)["location"]), NOW)
    target = inbox / f"{name}.eml"
    path.rename(target)
    data = target.read_bytes().replace(b"Message-ID: <reply-", f"Message-ID: <{name}-".encode(), 1)
    target.write_bytes(data)
    with_headers(target, *lines)
    return target


def refusals(store: Store) -> list[str]:
    return [r["message"] for r in store.audit_rows(kind="reply") if "refused" in r["message"]]


def test_a_forged_from_is_refused_and_an_authenticated_one_recorded(
    workspace: Path, tmp_path: Path
) -> None:
    settings = configure(
        workspace, "recap: {after: 2h, collect_replies: true, trust: authenticated}"
    )
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        engine.tick(NOW)
        reply(
            settings,
            store,
            "forged",
            f"Authentication-Results: {FORGED}",
            # the forger's own claim sits below the receiving server's field: not read
            f"Authentication-Results: {PASS}",
            "Sender: mallory@evil.example",
            "Return-Path: <bounce@evil.example>",
        )
        engine.tick(NOW + timedelta(minutes=10))
        assert store.actions(EMMA) == []
        [row] = store.replies()
        assert row["status"] == "refused" and "failed DMARC" in row["reason"]
        assert row["items"] == "[]"  # nothing of a refused reply is kept
        [message] = refusals(store)
        assert "emma@acme.example failed DMARC (dmarc=fail)" in message
        assert not [r for r in store.outbox_rows() if r["kind"] == "update"]

        reply(settings, store, "genuine", f"Authentication-Results: {PASS}")
        engine.tick(NOW + timedelta(minutes=20))
    assert {r["message_id"][:9]: r["status"] for r in store.replies()} == {
        "<forged-2": "refused",
        "<genuine-": "recorded",
    }
    assert store.actions(EMMA)
    assert len([r for r in store.outbox_rows() if r["kind"] == "update"]) == 1


def test_without_authentication_results_an_authenticated_trust_refuses(
    workspace: Path, tmp_path: Path
) -> None:
    settings = configure(
        workspace, "recap: {after: 2h, collect_replies: true, trust: authenticated}"
    )
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        engine.tick(NOW)
        reply(settings, store, "bare")
        engine.tick(NOW + timedelta(minutes=10))
    [message] = refusals(store)
    assert "no Authentication-Results" in message and store.actions(EMMA) == []


def test_the_local_provider_trusts_from_by_default(
    settings: config.Settings, tmp_path: Path
) -> None:
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        engine.tick(NOW)
        reply(settings, store, "forged", f"Authentication-Results: {FORGED}")
        engine.tick(NOW + timedelta(minutes=10))
    assert [r["status"] for r in store.replies()] == ["recorded"]


def test_a_reply_with_too_many_action_lines_is_refused_whole(
    workspace: Path, tmp_path: Path
) -> None:
    settings = configure(workspace, "recap: {after: 2h, collect_replies: true, max_actions: 5}")
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        engine.tick(NOW)
        path = reply(settings, store, "flood")
        lines = "".join(f"- [ ] action number {i}\n" for i in range(10_000))
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        msg.clear_content()
        msg.set_content(lines)
        path.write_bytes(msg.as_bytes())
        engine.tick(NOW + timedelta(minutes=10))
    [message] = refusals(store)
    assert "10000 action lines, over recap.max_actions (5); none recorded" in message
    assert store.actions(EMMA) == []
    assert not [r for r in store.outbox_rows() if r["kind"] == "update"]


def test_an_oversized_reply_is_refused_and_only_its_header_read(
    workspace: Path, tmp_path: Path
) -> None:
    settings = configure(
        workspace, "recap: {after: 2h, collect_replies: true, max_reply_size: 64KB}"
    )
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        engine.tick(NOW)
        path = reply(settings, store, "huge")
        with path.open("ab") as stream:
            stream.write(b"x" * 200_000 + b"\r\n")  # one line, no end in sight
        _, mailer = engine.connection("demo")
        assert isinstance(mailer, OutboxMailer) and mailer.max_size == 64 * 1024
        [got] = [m for m in mailer.replies() if m.ref == str(path)]
        assert not got.whole and got.size == path.stat().st_size
        assert b"Message-ID: <huge-" in got.raw and b"xxxx" not in got.raw
        engine.tick(NOW + timedelta(minutes=10))
    [message] = refusals(store)
    assert "over recap.max_reply_size (64 KB); not read" in message
    assert store.actions(EMMA) == []


def test_updated_recaps_stop_at_the_daily_cap_but_actions_are_kept(
    workspace: Path, tmp_path: Path
) -> None:
    settings = configure(
        workspace, "recap: {after: 2h, collect_replies: true, max_updates_per_day: 2}"
    )
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        engine.tick(NOW)
        for n in range(4):
            reply(settings, store, f"r{n}")
        engine.tick(NOW + timedelta(minutes=10))
        updates = [r for r in store.outbox_rows() if r["kind"] == "update"]
        assert len(updates) == 2
        held = [
            m["message"]
            for m in store.audit_rows(kind="reply")
            if "no updated recap" in m["message"]
        ]
        assert len(held) == 2 and "recap.max_updates_per_day" in held[0]
        assert [r["status"] for r in store.replies()] == ["recorded"] * 4
        assert store.actions(EMMA)  # the actions of every reply are recorded

        # a day later the cap allows updated recaps again
        reply(settings, store, "next")
        engine.tick(NOW + timedelta(days=1, minutes=20))
    assert len([r for r in store.outbox_rows() if r["kind"] == "update"]) == 3


@pytest.mark.parametrize(
    ("text", "size"), [("5MB", 5 * 1024 * 1024), ("300 kb", 300 * 1024), ("2048", 2048)]
)
def test_reply_sizes_read_with_their_units(workspace: Path, text: str, size: int) -> None:
    settings = configure(
        workspace, f"recap: {{after: 2h, collect_replies: true, max_reply_size: {text}}}"
    )
    collecting = [r for r in settings.relationships if r.program.collect_replies]
    assert {r.program.intake.max_size for r in collecting} == {size}
    assert settings.reply_size_limit("demo") == size


@pytest.mark.parametrize("text", ["lots", "10", "5 MiB", "true"])
def test_a_bad_reply_setting_names_its_key(workspace: Path, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        configure(workspace, f"recap: {{after: 2h, collect_replies: true, max_reply_size: {text}}}")
    assert "max_reply_size" in str(caught.value)


def test_an_unknown_trust_names_its_key(workspace: Path) -> None:
    with pytest.raises(ConfigError, match="trust"):
        configure(workspace, "recap: {after: 2h, collect_replies: true, trust: everyone}")
