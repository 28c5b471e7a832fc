"""The web app in a real browser: Playwright driving the system's Chromium against the app
served over real HTTP by the same server ``cadence serve`` uses. Every page is checked
with axe-core (no serious or critical violation) at desktop and at phone width (375px,
no sideways scrolling)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from agent.settings import config
from agent.tick.engine import Engine
from agent.web.app import Probes, create
from agent.web.base import Web
from agent.web.server import Server
from tests.conftest import NOW
from tests.test_report import chromium
from tests.web_helpers import ADMIN, signin_links, web_workspace

playwright = pytest.importorskip("playwright.sync_api")
axe_module = pytest.importorskip("axe_playwright_python.sync_playwright")

EMMA, BEN = "emma@acme.example", "ben@acme.example"
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 900}
#: the pages ``make screenshots`` also shows at phone width
PHONE_SHOTS = ("plan with an error", "cadence", "team")


#: where ``make screenshots`` puts a picture of each page (None in the tests)
SHOTS: Path | None = None


@contextmanager
def serving(workspace: Path, extra: str = "") -> Iterator[tuple[str, Path]]:
    path = web_workspace(workspace, NOW.isoformat(), "  secure_cookies: false\n" + extra)
    settings = config.load(path)
    web = Web(settings, clock=lambda: NOW)

    def confirm() -> None:
        with Engine(settings) as engine:
            engine.tick(NOW, confirm=True)

    probes = Probes(
        lambda: (True, {"status": "ok", "reasons": []}), lambda: b"", "text/plain", confirm
    )
    server = Server(create(settings, probes, web), "127.0.0.1", 0)
    server.start()
    try:
        host, port = server.address
        yield f"http://{host}:{port}", path.parent
    finally:
        server.stop()


@pytest.fixture
def served(workspace: Path) -> Iterator[tuple[str, Path]]:
    with serving(workspace) as found:
        yield found


@contextmanager
def launched(executable: str) -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        found = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield found
        finally:
            found.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    executable = chromium()
    if executable is None:
        pytest.skip("no Chromium: install it (make test-servers does, as root)")
    with launched(executable) as found:
        yield found


def accessible(page: Any, what: str) -> None:
    """No serious or critical axe-core violation, at desktop and at phone width."""
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        results = axe_module.Axe().run(page)
        bad = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not bad, (what, size, bad)
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= size["width"], (what, size, scroll)
        if SHOTS is not None and (size is DESKTOP or what in PHONE_SHOTS):
            kind = "phone" if size is PHONE else "desktop"
            page.screenshot(
                path=str(SHOTS / f"web-{what.replace(' ', '-')}-{kind}.png"), full_page=True
            )
    page.set_viewport_size(DESKTOP)


def sign_in(page: Any, base: str, folder: Path, who: str) -> None:
    page.goto(f"{base}/signin")
    accessible(page, "sign-in")
    page.get_by_label("Your work address").fill(who)
    page.get_by_role("button", name="Mail me a sign-in link").click()
    page.get_by_text("on its way").wait_for()
    link = urlsplit(signin_links(folder / "outbox", who)[-1])
    page.goto(f"{base}{link.path}?{link.query}")  # the server listens on a port of its own
    accessible(page, "sign-in confirm")
    page.get_by_role("button", name="Sign in to Cadence").click()
    page.get_by_role("heading", name=re.compile(r"^(Hello|Hallo)\b")).wait_for()


def test_employee_edits_the_plan_and_ticks_off_an_action(served, browser) -> None:  # type: ignore[no-untyped-def]
    base, folder = served
    page = browser.new_page()
    sign_in(page, base, folder, EMMA)
    accessible(page, "home")
    page.get_by_role("link", name="My plan").first.click()
    page.get_by_role("heading", name="My development plan").wait_for()
    accessible(page, "plan")
    milestones = page.locator("#f-goals-0-milestones")
    before = milestones.input_value()
    milestones.fill(before + "\n2027-02-30 lead a planning session")
    page.get_by_role("button", name="Save my plan").click()
    page.get_by_role("heading", name="The plan was not saved").wait_for()
    error = page.locator("#e-goals-0-milestones-1")
    assert "line 4" in error.inner_text()
    assert milestones.get_attribute("aria-invalid") == "true"
    accessible(page, "plan with an error")
    page.locator("#f-goals-0-milestones").fill(before + "\n2027-02-28 lead a planning session")
    page.get_by_label("My leaders and mentors may read it").check()
    page.get_by_role("button", name="Save my plan").click()
    page.get_by_text("Saved.").wait_for()
    assert "lead a planning session" in page.locator("#f-goals-0-milestones").input_value()
    assert EMMA in page.locator("#history ~ ul").inner_text()
    page.get_by_role("link", name="My cadence").first.click()
    page.get_by_role("heading", name="My cadence").wait_for()
    accessible(page, "cadence")
    action = "sign up for the new-manager course"
    page.get_by_role("button", name=f"Mark done: {action}").click()
    page.get_by_role("heading", name="Done").wait_for()
    assert page.get_by_role("button", name=f"Mark done: {action}").count() == 0


def test_leader_team_view_and_a_refusal(served, browser) -> None:  # type: ignore[no-untyped-def]
    base, folder = served
    page = browser.new_page()
    sign_in(page, base, folder, BEN)  # Ben reads German: so do his pages
    page.get_by_role("link", name="Mein Team").first.click()
    page.get_by_role("table", name="Die Menschen, die ich führe oder begleite").wait_for()
    for name in ("Ana Lima", "Dev Patel", "Emma Clarke", "Farid Haddad"):
        assert page.get_by_role("link", name=name).count() == 1
    accessible(page, "team")
    with page.expect_navigation():
        page.get_by_role("link", name="Emma Clarke").click()
    accessible(page, "relationship")
    refused = page.goto(f"{base}/plans/{EMMA}")
    assert refused is not None and refused.status == 403
    assert "engineering management" not in page.content()
    accessible(page, "refusal")


def test_admin_pages(served, browser) -> None:  # type: ignore[no-untyped-def]
    base, folder = served
    page = browser.new_page()
    sign_in(page, base, folder, ADMIN)
    page.goto(f"{base}/admin")
    accessible(page, "admin")
    with page.expect_navigation():
        page.get_by_role("link", name="The audit log").click()
    page.get_by_label("Kind").select_option("book")
    with page.expect_navigation():
        page.get_by_role("button", name="Filter").click()
    assert "kind=book" in page.url
    accessible(page, "audit log")
    page.goto(f"{base}/admin/report")
    page.get_by_text("Overall").first.wait_for()
    accessible(page, "report")


def test_admin_confirms_what_the_guard_held(workspace, browser) -> None:  # type: ignore[no-untyped-def]
    with serving(workspace, "\nguard:\n  max_actions: 1\n") as (base, folder):
        page = browser.new_page()
        sign_in(page, base, folder, ADMIN)
        page.goto(f"{base}/admin")
        page.get_by_role("heading", name="Held by the guard").wait_for()
        accessible(page, "guard held")
        page.get_by_role("button", name="Confirm: run the tick past the limits").click()
        page.get_by_text("Confirmed").wait_for()
        assert page.get_by_role("heading", name="Held by the guard").count() == 0
        assert "ok" in page.get_by_role("table").inner_text()


def main() -> None:  # pragma: no cover - `make screenshots`
    """Refresh docs/screenshots/web-*.png: each page at desktop and at phone width."""
    import tempfile

    from agent.app.demo import create_workspace

    global SHOTS
    SHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
    executable = chromium()
    assert executable, "no Chromium"
    flows = (
        test_employee_edits_the_plan_and_ticks_off_an_action,
        test_leader_team_view_and_a_refusal,
        test_admin_pages,
    )
    for flow in flows:
        with tempfile.TemporaryDirectory() as tmp:
            workspace = create_workspace(Path(tmp) / "demo", NOW)
            with serving(workspace) as found, launched(executable) as browser:
                flow(found, browser)


if __name__ == "__main__":  # pragma: no cover
    main()
