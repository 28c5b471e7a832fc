"""Time zone and working hours the config leaves out come from the mailbox settings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agent.core.retry import RetryPolicy
from agent.settings import config
from agent.tick.engine import Engine
from tests.microsoft.fixtures import graph_event, people, write_config
from tests.microsoft.server import GraphServer
from tests.microsoft.test_tick import CONFIG, NOW, SECRET_ENV


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GraphServer, Path]]:
    staff = people()
    # Ana names neither a time zone nor working hours, and there are no default hours
    template = CONFIG.replace('  working_hours: {{mon-fri: "09:00-17:00"}}\n', "").replace(
        "{{email: ana@contoso.example, name: Ana Lima, timezone: Europe/Berlin}}",
        "{{email: ana@contoso.example, name: Ana Lima}}",
    )
    with GraphServer([p.email for p in staff]) as server:
        path = write_config(server, tmp_path, template, SECRET_ENV)
        monkeypatch.setenv(SECRET_ENV, server.client_secret or "")
        server.mailboxes["ana@contoso.example"].settings = {
            "timeZone": "GMT Standard Time",
            "workingHours": {
                "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                "startTime": "08:00:00.0000000",
                "endTime": "12:00:00.0000000",
                "timeZone": {"name": "GMT Standard Time"},
            },
        }
        ben = staff[1]
        held = NOW - timedelta(days=120)
        server.add_event(
            "ana@contoso.example",
            graph_event("Development Align: Ana & Ben", held, held + timedelta(hours=1), [ben]),
        )
        yield server, path


def test_mailbox_settings_fill_what_the_config_leaves_out(setup: tuple[GraphServer, Path]) -> None:
    server, path = setup
    settings = config.load(path)
    assert settings.people["ana@contoso.example"].provided == frozenset(
        {"timezone", "working_hours"}
    )
    assert settings.people["ben@contoso.example"].provided == frozenset({"working_hours"})
    with Engine(settings, retry=RetryPolicy.none()) as engine:
        report = engine.tick(NOW)
        assert report.ok, report.errors
        ana = engine.settings.people["ana@contoso.example"]
        assert ana.timezone == "Europe/London"
        assert [str(s) for s in ana.working_hours.on(0)] == ["08:00-12:00"]
        booked = next(a for a in report.actions if a.kind == "book" and a.outcome == "done")
        # inside Ana's London morning (and the 10:00-16:00 window), not the config defaults
        assert booked.data["employee_local"].endswith("Europe/London")
        hour = int(booked.data["employee_local"].split()[2].split(":")[0])
        assert 10 <= hour < 12
        # read once per engine: a second tick asks no mailbox settings again
        server.reset_counts()
        engine.tick(NOW + timedelta(minutes=10))
        assert server.counts["mailboxSettings"] == 0
