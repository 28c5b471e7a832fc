"""Pick-a-time: the mail's links, used once without signing in, and the next tick moving
the meeting to the time picked."""

from __future__ import annotations

import email
import re
from datetime import timedelta
from email import policy
from pathlib import Path
from urllib.parse import urlsplit

from starlette.testclient import TestClient

from agent.settings import config
from agent.web.app import Probes, create
from agent.web.base import Web
from tests.conftest import NOW
from tests.test_scheduling import ANA_BEN, booking, decline, edit, tick
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
