"""First switch-on on the local provider: a calendar full of past meetings gets no recaps
for them; a meeting that ends after Cadence began watching gets its recap; ``backfill``
recaps the past meetings inside it; a relationship added later starts its own watch."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from agent.settings import config
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests.conftest import NOW

EMMA = "emma@acme.example/ben@acme.example"
FARID_EMMA = "farid@acme.example/emma@acme.example"


def _settings(workspace: Path, backfill: str | None) -> config.Settings:
    """The demo workspace (Emma and Ben's deep dive ended four hours before ``NOW``, Farid
    and Emma meet tomorrow) with the given ``recap.backfill``, or none."""
    text = workspace.read_text()
    assert "backfill: 1d" in text
    text = text.replace(", backfill: 1d", f", backfill: {backfill}" if backfill else "")
    workspace.write_text(text)
    return config.load(workspace)


def _recaps(store: Store) -> list[str]:
    return sorted(r["relationship"] for r in store.outbox_rows() if r["kind"] == "recap")


def test_first_tick_recaps_no_past_meeting_and_a_later_one_gets_its_recap(
    workspace: Path, tmp_path: Path
) -> None:
    settings = _settings(workspace, None)
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        first = engine.tick(NOW)
        assert first.ok, first.errors
        assert _recaps(store) == []  # Emma's deep dive ended before Cadence watched
        assert not list((settings.base / "outbox").glob("*recap.eml"))
        assert set(store.watched().values()) == {NOW}
        assert len(store.watched()) == len(settings.relationships)
        # a day later Farid and Emma's mentoring (after the switch-on) has ended
        second = engine.tick(NOW + timedelta(hours=24))
        assert second.ok, second.errors
        assert _recaps(store) == [FARID_EMMA]  # and still none for Emma's deep dive
        assert store.watched()[EMMA] == NOW  # the watch start is kept, not moved


def test_backfill_recaps_the_past_meetings_inside_it(workspace: Path, tmp_path: Path) -> None:
    settings = _settings(workspace, "5h")
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        assert engine.tick(NOW).ok
    assert _recaps(store) == [EMMA]
    recap = next(r for r in store.outbox_rows() if r["kind"] == "recap")
    assert Path(recap["location"]).exists()


def test_backfill_shorter_than_the_gap_recaps_nothing(workspace: Path, tmp_path: Path) -> None:
    settings = _settings(workspace, "3h")  # the deep dive ended four hours before
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        assert engine.tick(NOW).ok
    assert _recaps(store) == []


def test_a_relationship_added_later_starts_its_own_watch(workspace: Path, tmp_path: Path) -> None:
    full = workspace.read_text()
    line = re.search(r"  - \{employee: emma@acme\.example, partner: ben.*\n", full)
    assert line is not None
    workspace.write_text(full.replace(line[0], "").replace(", backfill: 1d", ""))
    store = Store(tmp_path / "t.db")
    with Engine(config.load(workspace), store=store) as engine:
        assert engine.tick(NOW - timedelta(days=1)).ok
    assert EMMA not in store.watched()
    workspace.write_text(full.replace(", backfill: 1d", ""))  # Emma and Ben join
    with Engine(config.load(workspace), store=store) as engine:
        assert engine.tick(NOW).ok
    watched = store.watched()
    assert watched[EMMA] == NOW and watched[FARID_EMMA] == NOW - timedelta(days=1)
    assert EMMA not in _recaps(store)


def test_a_dry_run_records_no_watch_but_plans_as_the_tick_would(
    workspace: Path, tmp_path: Path
) -> None:
    settings = _settings(workspace, None)
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        planned = engine.tick(NOW, dry_run=True)
        assert store.watched() == {}
        assert not [a for a in planned.planned if getattr(a, "kind", "") == "recap"]
