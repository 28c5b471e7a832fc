"""The web app over HTTP (Starlette's test client, the real app and a real store): sign-in
by a mailed link, sessions, CSRF, the plan edit with its history, and every refusal."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from agent.settings import config
from agent.store.plans import PlanRows
from agent.store.sqlite import Store
from agent.tick.plans import Plans
from agent.web.app import Probes, create
from agent.web.base import Web
from tests.conftest import NOW
from tests.web_helpers import ADMIN, csrf_of, signin_links, web_workspace

ANA, BEN, EMMA, DEV = (f"{n}@acme.example" for n in ("ana", "ben", "emma", "dev"))


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


@pytest.fixture
def site(workspace: Path) -> Iterator[tuple[TestClient, Web, Clock, Path]]:
    path = web_workspace(workspace, NOW.isoformat())
    settings = config.load(path)
    clock = Clock()
    web = Web(settings, clock=clock)
    probes = Probes(lambda: (True, {"status": "ok"}), lambda: b"", "text/plain")
    with TestClient(create(settings, probes, web), base_url="https://testserver") as client:
        yield client, web, clock, path.parent


def sign_in(client: TestClient, folder: Path, who: str) -> None:
    client.cookies.clear()
    page = client.get("/signin")
    assert page.status_code == 200
    sent = client.post("/signin", data={"email": who, "csrf": csrf_of(page.text)})
    assert sent.status_code == 200 and "on its way" in sent.text
    link = signin_links(folder / "outbox", who)[-1]
    parts = urlsplit(link)
    confirm = client.get(f"{parts.path}?{parts.query}")
    assert confirm.status_code == 200
    token = parts.query.removeprefix("t=")
    done = client.post(
        "/signin/link", data={"t": token, "csrf": csrf_of(confirm.text)}, follow_redirects=False
    )
    assert done.status_code == 303, done.text
    cookie = done.headers["set-cookie"]
    assert (
        "HttpOnly" in cookie
        and "Secure" in cookie
        and "SameSite=lax" in cookie.replace("Lax", "lax")
    )


def test_probes_stay_beside_the_pages(site) -> None:  # type: ignore[no-untyped-def]
    client, *_ = site
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/metrics").status_code == 200
    assert client.get("/nothing").status_code == 404


def test_signed_out_visitors_go_to_sign_in(site) -> None:  # type: ignore[no-untyped-def]
    client, *_ = site
    for path in ("/", "/me", "/me/plan", "/team", "/admin", f"/plans/{ANA}"):
        got = client.get(path, follow_redirects=False)
        assert got.status_code == 303 and got.headers["location"] == "/signin", path


def test_sign_in_link_works_once_and_expires(site) -> None:  # type: ignore[no-untyped-def]
    client, _web, clock, folder = site
    sign_in(client, folder, EMMA)
    assert client.get("/").status_code == 200
    link = urlsplit(signin_links(folder / "outbox", EMMA)[-1])
    token = link.query.removeprefix("t=")
    again = client.post("/signin/link", data={"t": token, "csrf": csrf_of(client.get("/").text)})
    assert again.status_code == 403 and "used already" in again.text
    # a new link, opened after its 15 minutes, is refused
    page = client.get("/signin")
    client.post("/signin", data={"email": EMMA, "csrf": csrf_of(page.text)})
    late = urlsplit(signin_links(folder / "outbox", EMMA)[-1])
    clock.now = NOW + timedelta(minutes=16)
    assert client.get(f"{late.path}?{late.query}").status_code == 403


def test_unknown_addresses_get_the_same_answer_and_no_mail(site) -> None:  # type: ignore[no-untyped-def]
    client, _, _, folder = site
    page = client.get("/signin")
    got = client.post("/signin", data={"email": "nobody@acme.example", "csrf": csrf_of(page.text)})
    assert got.status_code == 200 and "on its way" in got.text
    assert not list((folder / "outbox").glob("signin-*.eml"))


def test_sign_in_is_rate_limited(site) -> None:  # type: ignore[no-untyped-def]
    client, _, clock, _ = site
    csrf = csrf_of(client.get("/signin").text)
    codes = [
        client.post("/signin", data={"email": DEV, "csrf": csrf}).status_code for _ in range(6)
    ]
    assert codes == [200] * 5 + [429]
    clock.now = NOW + timedelta(minutes=16)
    assert client.post("/signin", data={"email": DEV, "csrf": csrf}).status_code == 200


def test_sessions_expire_and_sign_out_ends_them(site) -> None:  # type: ignore[no-untyped-def]
    client, _, clock, folder = site
    sign_in(client, folder, EMMA)
    clock.now = NOW + timedelta(hours=7, minutes=59)
    assert client.get("/me", follow_redirects=False).status_code == 200
    clock.now = NOW + timedelta(hours=8, minutes=1)
    assert client.get("/me", follow_redirects=False).status_code == 303
    clock.now = NOW
    sign_in(client, folder, EMMA)
    cookie = client.cookies.get("cadence_session")
    live = {"cookie": f"cadence_session={cookie}"}
    assert client.get("/me", headers=live, follow_redirects=False).status_code == 200
    client.post("/signout", data={"csrf": csrf_of(client.get("/").text)})
    client.cookies.clear()
    copied = {"cookie": f"cadence_session={cookie}"}
    assert client.get("/me", headers=copied, follow_redirects=False).status_code == 303


def test_forms_without_the_csrf_token_are_refused(site) -> None:  # type: ignore[no-untyped-def]
    client, _, _, folder = site
    sign_in(client, folder, EMMA)
    for path, form in (
        ("/me/plan", {"purpose": "forged"}),
        ("/me/actions", {"action": "sign up for the new-manager course"}),
        ("/signin", {"email": EMMA}),
    ):
        assert client.post(path, data=form).status_code == 403, path
        assert client.post(path, data={**form, "csrf": "0" * 64}).status_code == 403, path
    store = Store(folder / "var" / "cadence.db")
    assert PlanRows(store).get(EMMA) is None
    store.close()


def _plan_form(client: TestClient) -> dict[str, str]:
    page = client.get("/me/plan")
    assert page.status_code == 200
    fields = dict(re.findall(r'name="([\w-]+)" type="text" value="([^"]*)"', page.text))
    for name, text in re.findall(r'name="([\w-]+)" rows="4"[^>]*>([^<]*)</textarea>', page.text):
        fields[name] = text.replace("&#34;", '"').replace("&#39;", "'").replace("&amp;", "&")
    fields["csrf"] = csrf_of(page.text)
    fields["version"] = re.search(r'name="version" value="(\d+)"', page.text).group(1)  # type: ignore[union-attr]
    return fields


def test_plan_edit_shows_errors_by_field_then_saves_with_history(site) -> None:  # type: ignore[no-untyped-def]
    client, _, _, folder = site
    sign_in(client, folder, EMMA)
    form = _plan_form(client)
    assert form["goals-0-title"] == "Move into engineering management"
    bad = {
        **form,
        "goals-0-milestones": "2027-13-40 finish the course\nnodate",
        "skills": "Kotlin: guru",
    }
    got = client.post("/me/plan", data=bad)
    assert got.status_code == 422
    assert 'id="e-goals-0-milestones-1"' in got.text and "line 1: due" in got.text
    assert "write a date" in got.text and 'id="e-skills-1"' in got.text
    assert "guru" in got.text  # what was typed stays in the form
    good = {**form, "purpose": "Lead a calm, learning mobile team.", "shared": "on"}
    saved = client.post("/me/plan", data=good, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    store = Store(folder / "var" / "cadence.db")
    try:
        stored = PlanRows(store).get(EMMA)
        assert stored is not None and stored.shared and stored.version == 1
        assert stored.plan.purpose == "Lead a calm, learning mobile team."
        assert (
            next(a.title for a in stored.plan.actions) == "ask two peers for feedback on the retros"
        )
        history = PlanRows(store).history(EMMA)
        assert history[0].by == EMMA and history[0].how == "web"
        # the store wins over the file for the ticks
        settings = config.load(folder / "cadence.yaml")
        plans, _ = Plans().load(settings, [settings.people[EMMA]], store)
        assert plans[EMMA] is not None and plans[EMMA].purpose == stored.plan.purpose
    finally:
        store.close()
    # an edit from a stale page is refused, not lost
    stale = client.post("/me/plan", data={**good, "purpose": "older"})
    assert stale.status_code == 422 and "changed since you opened it" in stale.text
    page = client.get("/me/plan")
    assert "purpose" in page.text and "Changes" in page.text


def test_an_action_ticked_off(site) -> None:  # type: ignore[no-untyped-def]
    client, _, _, folder = site
    sign_in(client, folder, EMMA)
    page = client.get("/me")
    assert page.status_code == 200 and "sign up for the new-manager course" in page.text
    done = client.post(
        "/me/actions",
        data={"action": "sign up for the new-manager course", "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert done.status_code == 303
    store = Store(folder / "var" / "cadence.db")
    rows = {r["title"]: r["status"] for r in store.actions(EMMA)}
    store.close()
    assert rows["sign up for the new-manager course"] == "done"
    again = client.post(
        "/me/actions",
        data={"action": "sign up for the new-manager course", "csrf": csrf_of(page.text)},
    )
    assert again.status_code == 404


def test_leader_sees_the_team_and_only_shared_plans(site) -> None:  # type: ignore[no-untyped-def]
    client, _web, _, folder = site
    store = Store(folder / "var" / "cadence.db")
    settings = config.load(folder / "cadence.yaml")
    from agent.settings import idp

    ana_plan = idp.load(settings.resolve("plans/ana.yaml"))
    PlanRows(store).save(ANA, ana_plan, by=ANA, how="web", now=NOW, shared=True)
    store.close()
    sign_in(client, folder, BEN)
    team = client.get("/team")
    assert team.status_code == 200
    for name in ("Ana Lima", "Dev Patel", "Emma Clarke", "Farid Haddad"):
        assert name in team.text
    # Ben reads German (language: de in the demo), his pages too
    assert "Meine Auslastung" in team.text and re.search(r"<td>\d+ von 5", team.text)
    assert client.get(f"/plans/{ANA}").status_code == 200  # shared
    emma = client.get(f"/plans/{EMMA}")  # not shared
    assert emma.status_code == 403 and "engineering management" not in emma.text
    rel = client.get(f"/relationships/{EMMA}/{BEN}")
    assert rel.status_code == 200
    # Ben is not part of Ana's mentoring with Chloe
    other = client.get(f"/relationships/{ANA}/chloe@acme.example")
    assert other.status_code == 403 and "Mentoring" not in other.text
    assert client.get("/admin").status_code == 403
    assert client.get("/admin/log").status_code == 403
    assert client.get("/admin/report").status_code == 403


def test_employees_may_not_see_others(site) -> None:  # type: ignore[no-untyped-def]
    client, _, _, folder = site
    store = Store(folder / "var" / "cadence.db")
    settings = config.load(folder / "cadence.yaml")
    from agent.settings import idp

    PlanRows(store).save(
        ANA, idp.load(settings.resolve("plans/ana.yaml")), by=ANA, how="web", now=NOW, shared=True
    )
    store.close()
    sign_in(client, folder, EMMA)
    for path, secret in (
        (f"/plans/{ANA}", "forecasting"),  # shared with her leaders, not with a peer
        (f"/relationships/{ANA}/{BEN}", "Ana"),
        ("/team", "Farid"),  # Emma mentors Farid: she has a team, but not Ben's
        ("/admin", "Last ticks"),
        ("/admin/log", "relationship"),
        ("/admin/report", "Overall"),
    ):
        got = client.get(path)
        if path == "/team":
            assert got.status_code == 200 and "Ana" not in got.text
            continue
        assert got.status_code == 403, path
        assert secret not in got.text, path


def test_admin_sees_report_log_and_health_but_no_plan(site) -> None:  # type: ignore[no-untyped-def]
    client, _, _, folder = site
    sign_in(client, folder, ADMIN)
    overview = client.get("/admin")
    assert overview.status_code == 200 and "Last ticks" in overview.text
    report = client.get("/admin/report")
    assert report.status_code == 200 and "Overall" in report.text
    log = client.get("/admin/log", params={"relationship": f"{EMMA}/{BEN}"})
    assert log.status_code == 200 and f"{EMMA}/{BEN}" in log.text
    assert f"{ANA}/{BEN}" not in log.text
    assert client.get(f"/relationships/{EMMA}/{BEN}").status_code == 200
    plan = client.get(f"/plans/{EMMA}")
    assert plan.status_code == 403 and "engineering management" not in plan.text
    assert client.get("/me").status_code == 403  # HR has no relationship of their own here
    assert client.get("/me/plan").status_code == 403


def test_admin_confirms_a_tick_the_guard_held(workspace: Path) -> None:
    path = web_workspace(workspace, NOW.isoformat(), "\nguard:\n  max_actions: 1\n")
    settings = config.load(path)
    store = Store(settings.store)
    assert store.last_tick()["status"] == "held"  # type: ignore[index]
    assert store.bookings() == []
    store.close()
    ran: list[bool] = []

    def confirm() -> None:
        from agent.tick.engine import Engine

        with Engine(settings) as engine:
            ran.append(engine.tick(NOW, confirm=True).ok)

    web = Web(settings, clock=lambda: NOW)
    probes = Probes(lambda: (True, {}), lambda: b"", "text/plain", confirm)
    with TestClient(create(settings, probes, web), base_url="https://testserver") as client:
        sign_in(client, path.parent, EMMA)
        page = client.get("/me")
        assert (
            client.post("/admin/guard/confirm", data={"csrf": csrf_of(page.text)}).status_code
            == 403
        )
        sign_in(client, path.parent, ADMIN)
        page = client.get("/admin")
        assert "Held by the guard" in page.text and "Confirm" in page.text
        assert client.post("/admin/guard/confirm", data={}).status_code == 403  # no CSRF token
        assert not ran
        done = client.post("/admin/guard/confirm", data={"csrf": csrf_of(page.text)})
        assert done.status_code == 200 and "Confirmed" in done.text
        assert ran == [True]
        assert "Held by the guard" not in client.get("/admin").text
    store = Store(settings.store)
    assert store.bookings() and store.last_tick()["status"] == "ok"  # type: ignore[index]
    store.close()


def test_the_review_packet_downloads_with_the_stored_plan(site) -> None:  # type: ignore[no-untyped-def]
    client, _, _, folder = site
    store = Store(folder / "var" / "cadence.db")
    settings = config.load(folder / "cadence.yaml")
    from agent.settings import idp

    plan = idp.load(settings.resolve("plans/emma.yaml"))
    changed = plan.model_copy(update={"purpose": "Grow a calm team, from the store."})
    PlanRows(store).save(EMMA, changed, by=EMMA, how="web", now=NOW)
    store.close()
    sign_in(client, folder, EMMA)
    got = client.get("/me/packet")
    assert got.status_code == 200
    assert got.headers["content-disposition"].startswith("attachment;")
    assert "Grow a calm team, from the store." in got.text
    assert client.get("/me/packet", params={"since": "last year"}).status_code == 400
    sign_in(client, folder, BEN)
    assert client.get("/me/packet").status_code == 403


def test_the_report_is_drawn_once_per_tick(site, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from agent.views import report
    from agent.web import admin

    _, web, clock, folder = site
    built: list[object] = []
    real = report.build
    monkeypatch.setattr(report, "build", lambda *a, **k: built.append(a) or real(*a, **k))
    cache = admin.ReportCache()

    def settled() -> None:
        drawing = cache._drawing
        if drawing is not None:
            drawing.join(30)

    first = cache.get(web)
    assert cache.get(web) == first and len(built) == 1
    clock.now = NOW + web.settings.tick  # a tick's interval later: drawn again, in a thread
    assert cache.get(web) == first  # the last one meanwhile
    settled()
    assert len(built) == 2 and cache.get(web) != first
    store = Store(folder / "var" / "cadence.db")
    store.end_tick(store.begin_tick(clock.now, clock.now), "ok", {}, clock.now)
    store.close()
    cache.get(web)
    settled()
    assert len(built) == 3


def test_an_employee_pauses_the_cadence_for_a_leave(site) -> None:  # type: ignore[no-untyped-def]
    client, _, _, folder = site
    sign_in(client, folder, EMMA)
    page = client.get("/me")
    csrf = csrf_of(page.text)
    assert client.post("/me/pause", data={"csrf": csrf, "until": "someday"}).status_code == 200
    assert "Give the last day" in client.get("/me?pause=bad").text
    got = client.post("/me/pause", data={"csrf": csrf, "until": "2026-12-20"})
    assert got.status_code == 200 and "Your cadence is paused" in got.text
    store = Store(folder / "var" / "cadence.db")
    resumes = PlanRows(store).pauses()[EMMA]
    store.close()
    assert resumes.isoformat() == "2026-12-21T00:00:00+00:00"  # Europe/London: the next midnight
    assert client.post("/me/pause", data={"csrf": csrf, "resume": "1"}).status_code == 200
    store = Store(folder / "var" / "cadence.db")
    assert PlanRows(store).pauses() == {}
    store.close()
    assert client.post("/me/pause", data={"until": "2026-12-20"}).status_code == 403  # no CSRF


def test_a_paused_cadence_books_nothing_until_the_leave_ends(workspace: Path) -> None:
    from agent.tick.engine import Engine

    settings = config.load(workspace)
    ana = "ana@acme.example"
    store = Store(settings.store)
    PlanRows(store).pause(ana, NOW + timedelta(days=10), NOW)
    store.close()
    with Engine(settings) as engine:
        report = engine.tick(NOW)
    mine = [a for a in report.actions if a.relationship and a.relationship.startswith(f"{ana}/")]
    assert not [a for a in mine if a.kind == "book" and a.outcome == "done"]
    assert any("paused for a leave until" in a.detail for a in mine)
    others = [a for a in report.actions if a.kind == "book" and a.outcome == "done"]
    assert others  # everyone else is booked as before
    with Engine(settings) as engine:
        later = engine.tick(NOW + timedelta(days=10, hours=1))
    assert [
        a for a in later.actions
        if a.kind == "book" and a.outcome == "done" and a.relationship.startswith(f"{ana}/")
    ]  # fmt: skip
