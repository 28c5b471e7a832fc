"""Fixtures for the CalDAV provider: a real Radicale, a real aiosmtpd, a small team."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import time
from pathlib import Path

import pytest

from agent.connectors.caldav import CalDAVCalendar, make_client
from agent.core.model import Person, Span, WorkingHours
from agent.core.retry import RetryPolicy
from tests.caldav.servers import Radicale, SmtpSink


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the machine's caldav settings and netrc out of the tests (proxies and CA
    bundles are removed for every test by tests/conftest.py)."""
    for name in list(os.environ):
        upper = name.upper()
        if upper == "NETRC" or upper.startswith(("CALDAV_", "PYTHON_CALDAV")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no ~/.config/caldav


def person(email: str, zone: str = "Europe/Berlin", name: str | None = None) -> Person:
    hours = WorkingHours({d: (Span(time(9), time(17)),) for d in range(5)})
    return Person(
        email=email,
        name=name or email.split("@")[0].title() + " Example",
        timezone=zone,
        working_hours=hours,
        account="team",
    )


@pytest.fixture
def radicale(tmp_path: Path) -> Iterator[Radicale]:
    with Radicale(tmp_path / "radicale") as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def team(radicale: Radicale) -> dict[str, Person]:
    people = {
        "ana": person("ana@example.org", "America/Sao_Paulo", "Ana Lima"),
        "ben": person("ben@example.org", "Europe/Berlin", "Ben Ortiz"),
        "chloe": person("chloe@example.org", "Asia/Tokyo", "Chloe Park"),
    }
    for user in people:
        radicale.make_calendar(user)
    return people


@pytest.fixture
def calendar(radicale: Radicale, team: dict[str, Person]) -> Iterator[CalDAVCalendar]:
    client = make_client(radicale.url, "cadence", "not-checked")
    cal = CalDAVCalendar(
        client,
        calendars={p.email: radicale.calendar_url(user) for user, p in team.items()},
        account_username="cadence",
        retry=RetryPolicy.none(),
    )
    yield cal
    cal.close()
