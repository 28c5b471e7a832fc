"""Whole ticks against the local EWS server: the server's back-off and the password
(the tick itself is in tests/connectors/test_contract.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.core.retry import RetryPolicy
from agent.settings import config
from agent.tick.engine import Engine
from tests import programs
from tests.exchange.fixtures import people, server_for, workspace
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
        path = workspace(server, tmp_path, CONFIG, PASSWORD_ENV, monkeypatch.setenv)
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
