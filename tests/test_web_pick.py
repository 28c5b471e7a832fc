"""Pick-a-time: the mail's links, used once without signing in; the pick booked at once
by a focused tick of the service (or, when that cannot run, by the next tick); a time
taken in the meantime left alone."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import icalendar
import pytest
from starlette.testclient import TestClient

from agent.app import service as service_mod
from agent.app.lock import TickLock
from agent.app.service import Service
from agent.settings import config
from agent.store.plans import PlanRows
from agent.store.sqlite import Store
from agent.tick.reporting import TickReport
from agent.web.app import Probes, create
from agent.web.base import Web
from tests.conftest import NOW
from tests.test_scheduling import ANA_BEN, booking, decline, edit, ours, tick
from tests.web_helpers import WEB_SECTION, csrf_of

PICK = re.compile(r": (https?://\S+/pick\?t=\S+)")


def test_a_pick_link_works_once_and_the_next_tick_moves_the_meeting(workspace: Path) -> None:
    workspace.write_text(workspace.read_text() + WEB_SECTION)
    settings = config.load(workspace)
    tick(settings, NOW)
    key = booking(settings, ANA_BEN).key
    for n in (1, 2):  # declined twice: moved once, then the employee is asked
        for who in ("ana@acme.example", "ben@acme.example"):
            edit(settings, who, key, decline("ben@acme.example"))
        tick(settings, NOW + timedelta(hours=n))
    mail = email.message_from_bytes(
        (settings.base / "outbox" / f"{key}-ask1.eml").read_bytes(), policy=policy.default
    )
    body = mail.get_body(("plain",))
    assert body is not None
    links = PICK.findall(body.get_content())
    assert len(links) == 3, body.get_content()
    html = mail.get_body(("html",))
    assert html is not None and html.get_content().count("/pick?t=") == 3

    clock = [NOW + timedelta(hours=2, minutes=5)]
    web = Web(settings, clock=lambda: clock[0])
    probes = Probes(lambda: (True, {}), lambda: b"", "text/plain")
    with TestClient(create(settings, probes, web), base_url="https://testserver") as client:
        first, second = (urlsplit(u) for u in links[:2])
        tampered = client.get(f"{first.path}?{first.query[:-2]}xx")
        assert tampered.status_code == 403
        page = client.get(f"{first.path}?{first.query}")  # no session: none is needed
        assert page.status_code == 200 and "Escolher este horário" in page.text  # Ana's language
        token = first.query.removeprefix("t=")
        done = client.post("/pick", data={"t": token, "csrf": csrf_of(page.text)})
        assert done.status_code == 200 and "Escolhido" in done.text
        again = client.post("/pick", data={"t": token, "csrf": csrf_of(page.text)})
        assert again.status_code == 403 and "já foi escolhido" in again.text
        other = client.get(f"{second.path}?{second.query}")  # the same mail's other link
        assert other.status_code == 403
        no_csrf = client.post("/pick", data={"t": second.query.removeprefix("t=")})
        assert no_csrf.status_code == 403

    from agent.store.plans import PlanRows
    from agent.store.sqlite import Store

    store = Store(settings.store)
    picked = PlanRows(store).used("pick")[0]["data"]
    store.close()
    report = tick(settings, NOW + timedelta(hours=3))
    moves = [a for a in report.actions if a.kind == "move" and a.relationship == ANA_BEN]
    assert [a.outcome for a in moves] == ["done"], report.actions
    assert "the time the employee picked" in moves[0].detail
    moved = booking(settings, ANA_BEN)
    assert moved.start is not None and moved.start.isoformat().startswith(picked["start"][:16])
    quiet = tick(settings, NOW + timedelta(hours=4))
    assert not [a for a in quiet.actions if a.kind in ("move", "ask") and a.outcome == "done"]


def test_an_expired_pick_link_is_refused(workspace: Path) -> None:
    workspace.write_text(workspace.read_text() + WEB_SECTION)
    settings = config.load(workspace)
    from agent.core.model import Interval
    from agent.tick.picks import linker

    make = linker(settings, NOW)
    assert make is not None
    url = urlsplit(
        make(
            ANA_BEN,
            "k" * 32,
            1,
            Interval(NOW + timedelta(days=3), NOW + timedelta(days=3, hours=1)),
        )
    )
    probes = Probes(lambda: (True, {}), lambda: b"", "text/plain")
    late = Web(settings, clock=lambda: NOW + timedelta(days=8))
    with TestClient(create(settings, probes, late), base_url="https://testserver") as client:
        assert client.get(f"{url.path}?{url.query}").status_code == 403
    fresh = Web(settings, clock=lambda: NOW + timedelta(days=1))
    with TestClient(create(settings, probes, fresh), base_url="https://testserver") as client:
        assert client.get(f"{url.path}?{url.query}").status_code == 200


def _asked(workspace: Path) -> tuple[config.Settings, str, list[str]]:
    """A meeting declined twice (moved once, then the employee asked), and the links of
    the pick-a-time mail."""
    workspace.write_text(workspace.read_text() + WEB_SECTION)
    settings = config.load(workspace)
    tick(settings, NOW)
    key = booking(settings, ANA_BEN).key
    for n in (1, 2):
        for who in ("ana@acme.example", "ben@acme.example"):
            edit(settings, who, key, decline("ben@acme.example"))
        tick(settings, NOW + timedelta(hours=n))
    mail = email.message_from_bytes(
        (settings.base / "outbox" / f"{key}-ask1.eml").read_bytes(), policy=policy.default
    )
    body = mail.get_body(("plain",))
    assert body is not None
    return settings, key, PICK.findall(body.get_content())


def _pick(settings: config.Settings, link: str, book: Any) -> str:
    """Use ``link`` on the page, with ``book`` as the service's booking; the answer."""
    web = Web(settings, clock=lambda: NOW + timedelta(hours=2, minutes=5))
    probes = Probes(lambda: (True, {}), lambda: b"", "text/plain", book=book)
    with TestClient(create(settings, probes, web), base_url="https://testserver") as client:
        url = urlsplit(link)
        page = client.get(f"{url.path}?{url.query}")
        assert page.status_code == 200
        token = url.query.removeprefix("t=")
        done = client.post("/pick", data={"t": token, "csrf": csrf_of(page.text)})
        assert done.status_code == 200
        return done.text


def _picked(settings: config.Settings) -> dict[str, Any]:
    store = Store(settings.store)
    try:
        return dict(PlanRows(store).used("pick")[0]["data"])
    finally:
        store.close()


def test_a_pick_is_booked_at_once(workspace: Path) -> None:
    settings, key, links = _asked(workspace)
    before = booking(settings, ANA_BEN)
    service = Service(settings)
    calls: list[frozenset[str]] = []

    def book(owners: frozenset[str], now: datetime) -> TickReport | None:
        calls.append(owners)
        return service.book(owners, now)

    text = _pick(settings, links[1], book)
    # Ana reads Brazilian Portuguese: "Booked: …, the updated invitation is on its way"
    assert "Agendado:" in text and "está a caminho" in text, text
    assert calls == [frozenset({"ana@acme.example", "ben@acme.example"})]
    picked = _picked(settings)
    moved = booking(settings, ANA_BEN)
    assert moved.key == key and moved.start is not None and moved.start != before.start
    assert moved.start.isoformat().startswith(picked["start"][:16])
    # the calendars have it: the organizer's event moved, with its key
    events = ours(settings, "ana@acme.example", key) or ours(settings, "ben@acme.example", key)
    assert events and events[0].decoded("DTSTART").astimezone(UTC) == moved.start
    # the audit tells why, as for a pick booked by a tick
    store = Store(settings.store)
    rows = [
        r
        for r in store.audit_rows(relationship=ANA_BEN, kind="move")
        if "the time the employee picked" in r["message"]
    ]
    store.close()
    assert rows
    # the next tick has nothing left to do for it: the booking was idempotent
    quiet = tick(settings, NOW + timedelta(hours=3))
    assert not [a for a in quiet.actions if a.kind in ("move", "ask") and a.outcome == "done"]


def test_a_pick_whose_time_was_taken_is_left_alone(workspace: Path) -> None:
    settings, _key, links = _asked(workspace)
    before = booking(settings, ANA_BEN)
    slot = links[0]
    # Ben's calendar fills the first proposed time before Ana picks it
    data = Web(settings).keys.pick.check(urlsplit(slot).query.removeprefix("t="), NOW)
    assert data is not None
    start, end = data.data["s"], data.data["e"]
    path = settings.base / "calendars" / "ben@acme.example.ics"
    cal = icalendar.Calendar.from_ical(path.read_bytes())
    busy = icalendar.Event()
    busy.add("uid", "taken@acme.example")
    busy.add("summary", "Customer visit")
    busy.add("dtstart", datetime.fromisoformat(start))
    busy.add("dtend", datetime.fromisoformat(end))
    busy.add("dtstamp", NOW)
    cal.add_component(busy)
    path.write_bytes(cal.to_ical())

    text = _pick(settings, slot, Service(settings).book)
    assert "não está mais livre" in text and "Agendado" not in text, text  # no longer free
    assert booking(settings, ANA_BEN).start == before.start


def test_a_pick_that_cannot_be_booked_now_is_left_to_the_next_tick(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _key, links = _asked(workspace)
    before = booking(settings, ANA_BEN)
    monkeypatch.setattr(service_mod, "BOOK_WAIT", 0.2)
    with TickLock(settings.store):  # another process is ticking on this store
        text = _pick(settings, links[2], Service(settings).book)
    assert "não conseguiu agendar agora" in text and "Agendado" not in text, text
    assert booking(settings, ANA_BEN).start == before.start
    report = tick(settings, NOW + timedelta(hours=3))
    moves = [a for a in report.actions if a.kind == "move" and a.relationship == ANA_BEN]
    assert [a.outcome for a in moves] == ["done"], report.actions
    assert booking(settings, ANA_BEN).start.isoformat().startswith(_picked(settings)["start"][:16])  # type: ignore[union-attr]
