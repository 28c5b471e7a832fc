"""Time zone and working hours the config leaves out come from the mailbox settings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agent.core.retry import RetryPolicy
from agent.settings import config
from agent.store.directory import DirectoryRows
from agent.store.mailbox import MailboxLanguages
from agent.tick.engine import Engine
from agent.views.people import laid
from tests.microsoft.fixtures import add_deep_dives, graph_event, people, write_config
from tests.microsoft.server import GraphServer
from tests.microsoft.test_tick import CONFIG, NOW, SECRET_ENV
from tests.programs import TITLE


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


ANA, BEN, CHLOE = (f"{n}@contoso.example" for n in ("ana", "ben", "chloe"))


def _locale(code: str, name: str) -> dict[str, str]:
    return {"locale": code, "displayName": name}


@pytest.fixture
def languages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[GraphServer, Path]]:
    """Ana and Chloe name no language; Ben's config names French."""
    staff = people()
    template = CONFIG.replace(
        "name: Ben Ortiz, timezone: Europe/Berlin}}",
        "name: Ben Ortiz, timezone: Europe/Berlin, language: fr}}",
    )
    with GraphServer([p.email for p in staff]) as server:
        path = write_config(server, tmp_path, template, SECRET_ENV)
        monkeypatch.setenv(SECRET_ENV, server.client_secret or "")
        server.mailboxes[ANA].settings["language"] = _locale("de-DE", "German (Germany)")
        server.mailboxes[BEN].settings["language"] = _locale("ja-JP", "Japanese (Japan)")
        server.mailboxes[CHLOE].settings["language"] = _locale("it-IT", "Italian (Italy)")
        add_deep_dives(server, staff, NOW - timedelta(days=120), NOW - timedelta(days=20))
        yield server, path


def test_a_language_from_the_mailbox_when_config_and_directory_name_none(
    languages: tuple[GraphServer, Path],
) -> None:
    server, path = languages
    text = path.read_text().replace(
        f'title: "{TITLE}"', 'title: "{{ what }}: {{ employee.first_name }}"'
    )
    path.write_text(text)
    with Engine(config.load(path), retry=RetryPolicy.none()) as engine:
        report = engine.tick(NOW)
        assert report.ok, report.errors
        found = {email: p.language for email, p in engine.settings.people.items()}
        # Ana's de-DE; Ben's config says French (the mailbox's Japanese is not asked for);
        # Chloe's it-IT has no catalogue: the program's or the global language decides
        assert found == {ANA: "de", BEN: "fr", CHLOE: None}
        said = [r["message"] for r in engine.store.audit_rows(kind="settings")]
        assert said == [
            f"{ANA}: language de from the mailbox",
            f"{CHLOE}: the mailbox's language 'it-IT' has no catalogue",
        ]
        assert [t for r, t in server.log if r == "mailboxSettings" and BEN in t] == []
    # Ana organizes her deep dive: its title is in her language
    booked = [e["subject"] for e in server.events_of(ANA) if e.get("transactionId")]
    assert booked == ["Entwicklungsgespräch Advance: Ana"]

    # a new process reads no mailbox again: the store keeps what they said
    server.reset_counts()
    settings = config.load(path)
    with Engine(settings, retry=RetryPolicy.none()) as engine:
        assert engine.tick(NOW + timedelta(minutes=10)).ok
        assert engine.settings.people[ANA].language == "de"
        assert laid(settings, engine.store).people[ANA].language == "de"  # the web app's
    assert server.counts["mailboxSettings"] == 0

    # a month on, they are asked again; a mailbox that fails keeps its last language
    server.mailboxes[CHLOE].settings["language"] = _locale("es-MX", "Spanish (Mexico)")
    server.broken.add("mailboxSettings")
    later = NOW + timedelta(days=31)
    with Engine(config.load(path), retry=RetryPolicy.none()) as engine:
        engine.tick(later)
        assert engine.settings.people[ANA].language == "de"
        assert server.counts["mailboxSettings"] == 2
    server.broken.discard("mailboxSettings")
    with Engine(config.load(path), retry=RetryPolicy.none()) as engine:
        engine.tick(later + timedelta(hours=1))  # failed reads wait a day
        assert server.counts["mailboxSettings"] == 2
        engine.tick(later + timedelta(days=1, minutes=1))
        assert engine.settings.people[CHLOE].language == "es"
        assert server.counts["mailboxSettings"] == 4
        # forgetting a person erases what their mailbox said, and nobody else's
        lost = DirectoryRows(engine.store).forget(ANA, later)
        assert lost["meta"] == 1
        assert set(MailboxLanguages(engine.store).all()) == {CHLOE}
