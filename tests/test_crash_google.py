"""Kill a real ``cadence run --once`` talking to the fake Google at every crash point;
restarts must leave one event per booking and one mail per Message-ID."""

from __future__ import annotations

import collections
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.store.sqlite import Store
from tests.google.harness import PROGRAMS, workspace
from tests.test_crash import run_once, tally

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
ANA, BEN = "ana@acme.example", "ben@acme.example"


def test_crash_anywhere_against_google(tmp_path: Path) -> None:
    killed: list[str] = []
    uncertain = 0
    n = 0
    while True:
        n += 1
        folder = tmp_path / f"k{n}"
        folder.mkdir()
        with workspace(folder, rest=PROGRAMS) as ws:
            srv = ws.server
            held = NOW - timedelta(days=120)
            srv.add_event(
                ANA, "Development Align: Ana & Ben", held, held + timedelta(hours=1), [BEN]
            )
            soon = NOW + timedelta(hours=23)
            srv.add_event(
                ANA, "Development check-in: Ana & Ben", soon, soon + timedelta(minutes=15), [BEN]
            )
            trace = folder / "trace.txt"
            first = run_once(ws.path, kill_at=n, extra={"CADENCE_KILL_TRACE": str(trace)})
            if first.returncode != -signal.SIGKILL:
                assert first.returncode == 0, first.stderr
                break
            killed.append(trace.read_text().splitlines()[-1])  # the point it died at
            again = run_once(ws.path)
            assert again.returncode == 0, again.stderr
            quiet = run_once(ws.path)
            assert "Nothing new to book or send" in quiet.stdout, quiet.stdout
            ours = [
                e
                for e in srv.state.calendars[ANA].events.values()
                if (e.get("extendedProperties") or {}).get("private")
                and e.get("status") != "cancelled"
            ]
            assert len(ours) == 1, f"kill point {n}: {len(ours)} bookings"
            ids = collections.Counter(s.message["Message-ID"] for s in srv.state.sent)
            store = Store(folder / "cadence.db")
            assert store.integrity() == "ok"
            statuses = {r["status"] for r in store.outbox_rows()}
            if statuses == {"uncertain"}:
                # killed inside the send call itself: without Gmail's read scope nobody can
                # tell whether it went out, so it is never sent twice, and says so
                uncertain += 1
                assert store.audit_rows(kind="agenda")[-1]["message"].endswith(
                    "never send it twice"
                )
                assert max(ids.values(), default=0) <= 1
            else:
                assert statuses == {"sent"}
                # the agenda of tomorrow's check-in, once; Google sends the invitations
                assert list(ids.values()) == [1], f"kill point {n}: {ids}"
            store.close()
    print(f"kill points (Google): {tally(killed)}, uncertain sends: {uncertain}")
    assert len(killed) >= 8
    assert uncertain == 2  # killed just before and just after the send call
