"""The whole tick against the local EWS server: lapse found, booking made with an
invitation, agenda sent, rerun quiet at one request per calendar."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.core.retry import RetryPolicy
from agent.settings import config
from agent.tick.engine import Engine
from tests import programs
from tests.exchange.fixtures import people, server_for
from tests.exchange.server import EwsServer

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday
PASSWORD_ENV = "CADENCE_EWS_PASSWORD"
PASSWORD_SEEN: list[str] = []  # the password the fixture set, for the secrets test
CONFIG = programs.config(
    "onprem",
    """\
    provider: exchange
    server: {url}
    auth: basic
    username: {username}
    password_env: {password_env}
    access_type: impersonation
    version: "2016"
    ca_bundle: ews-ca.pem
    max_wait: 0s
""",
)


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EwsServer, Path]]:
    staff = people()
    ana, ben, chloe = staff
    with server_for(staff) as server:
        server.write_ca(tmp_path / "ews-ca.pem")
        path = programs.write_config(
            tmp_path, CONFIG, url=server.url, username=server.username, password_env=PASSWORD_ENV
        )
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        PASSWORD_SEEN[:] = [server.password]
        # Ana and Ben held a deep dive 120 days ago: lapsed. Chloe and Ben met 20 days ago.
        held = NOW - timedelta(days=120)
        server.add_event(
            ana.email, "Development Align: Ana & Ben", held, held + timedelta(hours=1), [ben.email]
        )
        recent = NOW - timedelta(days=20)
        server.add_event(
            chloe.email, "Deep dive: Chloe & Ben", recent, recent + timedelta(hours=1), [ben.email]
        )
        # Ben is away on Wednesday and Thursday daytime, every slot of it
        for day in (2, 3):
            start = (NOW + timedelta(days=day)).replace(hour=7)
            server.add_event(ben.email, "Offsite", start, start + timedelta(hours=10))
        yield server, path


def test_tick_books_sends_agenda_and_reruns_quietly(setup: tuple[EwsServer, Path]) -> None:
    server, path = setup
    ana, ben = "ana@contoso.example", "ben@contoso.example"

    with Engine(config.load(path), retry=RetryPolicy.none()) as engine:
        first = engine.tick(NOW)
        assert first.ok, first.errors
        lapses = [a for a in first.actions if a.kind == "lapse"]
        booked = [a for a in first.actions if a.kind == "book" and a.outcome == "done"]
        assert [a.relationship for a in lapses] == [f"{ana}/{ben}"]
        assert [a.relationship for a in booked] == [f"{ana}/{ben}"]
        key = booked[0].data["key"]
        [item] = [i for i in server.items_of(ana) if key in i.ext.values()]
        assert item.start >= NOW + timedelta(days=2)
        assert item.start.weekday() not in (2, 3)  # Ben's offsite
        assert ("request", ben, item.subject) in server.invitations
        assert any(i.subject == item.subject and i.copy_of for i in server.items_of(ben))
        assert server.counts["CreateItem"] == 1
        # every request impersonated the mailbox it touched
        assert all(
            r.impersonating
            for r in server.requests
            if r.operation not in ("GetUserAvailability", "GetServerTimeZones")
        )

        # the day before, the agenda goes out from Ana's mailbox
        before = item.start - timedelta(hours=12)
        second = engine.tick(before)
        assert second.ok, second.errors
        assert [a.kind for a in second.actions if a.outcome == "done"] == ["agenda"]
        [agenda] = server.sent
        assert ana in agenda["From"] and ben in agenda["To"]
        assert agenda["Message-ID"].endswith("@cadence>")

        # a rerun finds nothing to do and costs one FindItem per calendar
        server.reset_counts()
        third = engine.tick(before + timedelta(minutes=10))
        assert third.ok, third.errors
        assert [a for a in third.actions if a.outcome in ("done", "already")] == []
        assert dict(server.counts) == {"FindItem": 3}
        assert len(server.sent) == 1

    # a fresh process costs the same: no version probe, no GetFolder
    server.reset_counts()
    with Engine(config.load(path), retry=RetryPolicy.none()) as engine:
        fourth = engine.tick(before + timedelta(minutes=20))
        assert fourth.ok, fourth.errors
        assert dict(server.counts) == {"FindItem": 3}

        # after the meeting, the recap answers the agenda in the same thread
        recap_tick = engine.tick(item.end + timedelta(hours=2, minutes=5))
        assert recap_tick.ok, recap_tick.errors
    assert [a.kind for a in recap_tick.actions if a.outcome == "done"] == ["recap"]
    recap = server.sent[-1]
    assert recap["In-Reply-To"] == agenda["Message-ID"]
    assert agenda["Message-ID"] in recap["References"]


def test_server_busy_is_retried_after_the_back_off(setup: tuple[EwsServer, Path]) -> None:
    server, path = setup
    slept: list[float] = []
    server.throttle("GetUserAvailability", times=1, back_off_ms=4000)
    server.throttle("CreateItem", times=1, back_off_ms=2000)
    retry = RetryPolicy(attempts=3, sleep=slept.append, rand=lambda: 0.0)
    with Engine(config.load(path), retry=retry) as engine:
        report = engine.tick(NOW)
    assert report.ok, report.errors
    assert report.count("book") == 1
    assert slept == [4.0, 2.0]
    assert len([i for i in server.items_of("ana@contoso.example") if i.ext]) == 1


def test_a_stale_cursor_resyncs_in_full_and_books_nothing_twice(
    setup: tuple[EwsServer, Path],
) -> None:
    server, path = setup
    with Engine(config.load(path), retry=RetryPolicy.none()) as engine:
        assert engine.tick(NOW).ok
        engine.store.db.execute("UPDATE sync_state SET cursor = 'garbage'")
        server.reset_counts()
        again = engine.tick(NOW + timedelta(minutes=10))
    assert again.ok, again.errors
    assert [a for a in again.actions if a.kind == "book" and a.outcome == "done"] == []
    assert server.counts["CreateItem"] == 0


def test_the_password_is_never_logged_or_stored(
    setup: tuple[EwsServer, Path], caplog: pytest.LogCaptureFixture
) -> None:
    import base64
    import logging

    server, path = setup
    caplog.set_level(logging.DEBUG)
    with Engine(config.load(path), retry=RetryPolicy.none()) as engine:
        good = engine.tick(NOW)
        server.password = "the-server-now-wants-another"
        bad = engine.tick(NOW + timedelta(minutes=10))
    assert good.ok and not bad.ok
    assert any("Unauthorized" in e or "credentials" in e for e in bad.errors)
    texts = "\n".join(r.getMessage() for r in caplog.records) + "\n".join(bad.errors)
    stored = b"".join(p.read_bytes() for p in path.parent.rglob("*") if p.is_file())
    for secret in (
        PASSWORD_SEEN[0],
        base64.b64encode(f"{server.username}:{PASSWORD_SEEN[0]}".encode()).decode(),
    ):
        assert secret not in texts
        assert secret.encode() not in stored
