"""Kill a real ``cadence run --once`` talking to the fake Microsoft Graph at its crash
points; a restart must leave one event per booking on every calendar and one mail per
Message-ID. An interrupted send is looked for in the sender's Sent Items where the app
may read them; with ``Mail.Send`` alone it is marked ``uncertain``, never repeated."""

from __future__ import annotations

import collections
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.store.sqlite import Store
from tests.environ import clean_environ
from tests.microsoft.fixtures import graph_event, people
from tests.microsoft.server import GraphServer
from tests.microsoft.test_tick import CONFIG as TICK_CONFIG
from tests.microsoft.test_tick import TITLE
from tests.test_crash import area, chosen, run_once, tally

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday
SECRET_ENV = "GRAPH_CRASH_TEST_SECRET"  # run_once drops CADENCE_* from the environment
ANA, BEN, CHLOE = (p.email for p in people())

# the Graph tick's config with a check-in series and recaps: this tick books Ana's lapsed
# deep dive and mails the agenda of tomorrow's check-in and the recaps of Chloe's meetings
# (held before this first tick: the backfill asks for their recaps)
CONFIG = TICK_CONFIG.replace(
    "    lapse_grace: 7d\n",
    "      check_in:\n"
    "        every: 30d\n"
    "        duration: 15m\n"
    "        skip_near: deep_dive\n"
    '        title: "Development check-in: {{{{ employee.first_name }}}}"\n'
    "        match: '(?i)\\bcheck-?in\\b'\n"
    "    lapse_grace: 7d\n",
).replace(
    "    agenda: {{before: 24h}}\n",
    "    agenda: {{before: 24h}}\n    recap: {{after: 2h, backfill: 7d}}\n",
)


@contextmanager
def graph_workspace(
    folder: Path, readable: bool = True
) -> Iterator[tuple[GraphServer, Path, dict[str, str]]]:
    """A fresh Graph with the calendars this tick starts from, and its config; unless
    ``readable``, the app may send mail but read none."""
    ana, ben, chloe = staff = people()
    with clean_environ(), GraphServer([p.email for p in staff]) as server:
        if not readable:
            server.app_permissions -= {"Mail.Read", "Mail.ReadBasic.All"}
        server.write_ca(folder / "graph-ca.pem")
        path = folder / "cadence.yaml"
        path.write_text(
            CONFIG.format(
                tenant=server.tenant,
                client_id=server.client_id,
                secret_env=SECRET_ENV,
                url=server.url,
                title=TITLE,
            )
        )
        held = NOW - timedelta(days=120)
        server.add_event(
            ana.email,
            graph_event("Development Align: Ana & Ben", held, held + timedelta(hours=1), [ben]),
        )
        soon = NOW + timedelta(hours=23)
        server.add_event(
            ana.email,
            graph_event("Development check-in: Ana", soon, soon + timedelta(minutes=15), [ben]),
        )
        for who in (ana, chloe):  # check-ins held lately: none is due
            last = NOW - timedelta(days=10 if who is ana else 4)
            server.add_event(
                who.email,
                graph_event(
                    f"Development check-in: {who.first_name}",
                    last,
                    last + timedelta(minutes=15),
                    [ben],
                ),
            )
        ended = NOW - timedelta(hours=2, minutes=30)
        server.add_event(
            chloe.email,
            graph_event("Deep dive: Chloe & Ben", ended - timedelta(hours=1), ended, [ben]),
        )
        yield server, path, {SECRET_ENV: server.client_secret or ""}


def check(server: GraphServer, folder: Path, where: str) -> tuple[int, set[str]]:
    """One event per booking on the organizer's and the attendee's calendars, one mail per
    Message-ID; return the number of ``uncertain`` sends and the outbox keys."""
    store = Store(folder / "var" / "cadence.db")
    try:
        assert store.integrity() == "ok"
        bookings = store.bookings()
        outbox = store.outbox_rows()
    finally:
        store.close()
    assert bookings and {b.status for b in bookings} == {"booked"}, f"{where}: {bookings}"
    for booking in bookings:
        mine = [
            e
            for e in server.events_of(booking.organizer)
            if e.get("transactionId") == f"cadence-{booking.key}" and not e.get("isCancelled")
        ]
        assert len(mine) == 1, f"{where}: {len(mine)} events for {booking.key}"
        copies = [e for e in server.events_of(BEN) if e["iCalUId"] == mine[0]["iCalUId"]]
        assert len(copies) == 1, f"{where}: {len(copies)} copies on Ben's calendar"
    sent = collections.Counter(str(m["Message-ID"]) for m in server.sent)
    assert max(sent.values(), default=0) <= 1, f"{where}: {sent}"
    uncertain = 0
    for row in outbox:
        if row["status"] == "uncertain":
            # killed in the send call's window: Graph cannot say whether it went out
            uncertain += 1
        else:
            assert row["status"] == "sent", f"{where}: {row['key']} {row['status']}"
            assert sent[row["message_id"]] == 1, f"{where}: {row['key']} not sent once"
    return uncertain, {r["key"].rsplit(":", 1)[-1] for r in outbox}


@pytest.mark.parametrize("readable", [True, False], ids=["sent-items", "send-only"])
def test_crash_anywhere_against_microsoft_graph(tmp_path: Path, readable: bool) -> None:
    reference = tmp_path / "reference"
    reference.mkdir()
    trace = tmp_path / "trace.txt"
    with graph_workspace(reference, readable) as (server, path, env):
        extra = {**env, "CADENCE_KILL_AT": str(10**9), "CADENCE_KILL_TRACE": str(trace)}
        result = run_once(path, now=NOW, extra=extra)
        assert result.returncode == 0, result.stderr
        assert check(server, reference, "reference") == (0, {"agenda", "recap"})
        sends = len(server.sent)  # an agenda and two recaps
    points = trace.read_text().splitlines()
    killed: list[str] = []
    uncertain = 0
    for n in chosen(len(points)):
        folder = tmp_path / f"k{n}"
        folder.mkdir()
        where = f"kill point {n} ({points[n - 1]})"
        with graph_workspace(folder, readable) as (server, path, env):
            first = run_once(path, kill_at=n, now=NOW, extra=env)
            assert first.returncode == -signal.SIGKILL, f"{where} not reached: {first.stderr}"
            killed.append(points[n - 1])
            again = run_once(path, now=NOW, extra=env)
            assert again.returncode == 0, again.stderr
            quiet = run_once(path, now=NOW, extra=env)
            assert "Nothing new to book or send" in quiet.stdout, f"{where}: {quiet.stdout}"
            unsure, kinds = check(server, folder, where)
            assert kinds == {"agenda", "recap"}, f"{where}: {kinds}"  # every due mail handled
            uncertain += unsure
            if unsure:
                assert not readable, f"{where}: Sent Items could have told"
                assert points[n - 1].endswith((":sending", ":after-send")), where
    print(f"kill points (Microsoft Graph): {tally(killed)}, uncertain sends: {uncertain}")
    assert {area(p) for p in killed} == {"sync", "booking", "sending"}
    if os.environ.get("CRASH_ALL") == "1" and not readable:
        # killed just before and just after each send call
        assert uncertain == 2 * sends
    if os.environ.get("CRASH_ALL") == "1":
        assert len(killed) >= 12
