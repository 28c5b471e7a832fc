"""Sign-in with Google and Microsoft in a real browser: Chromium clicks the button, goes
through the local OpenID providers (HTTPS) and comes back signed in to the app served
over real HTTP; the sign-in page and the refusal pass axe-core."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme

from agent.settings import config
from agent.web.app import Probes, create
from agent.web.base import Web
from agent.web.server import Server
from tests import test_web_browser
from tests.conftest import NOW
from tests.oidc.server import OIDCServer
from tests.test_report import chromium
from tests.test_web_browser import accessible, browser, launched  # noqa: F401
from tests.test_web_oidc import (
    BEN,
    EMMA,
    GOOGLE_ID,
    GOOGLE_SECRET,
    MS_ID,
    MS_SECRET,
    TID,
    add_entra,
    google_account,
    ms_account,
)
from tests.web_helpers import web_workspace

pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(workspace: Path) -> Iterator[tuple[str, OIDCServer, OIDCServer]]:
    """The app over HTTP with both providers configured (their secrets in the env)."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    ca = trustme.CA()
    google = OIDCServer(GOOGLE_ID, GOOGLE_SECRET, [f"{base}/signin/google/callback"], ca=ca)
    microsoft = OIDCServer(
        MS_ID, MS_SECRET, [f"{base}/signin/microsoft/callback"], prefix=f"/{TID}/v2.0", ca=ca
    )
    with google, microsoft:
        google.write_ca(workspace.parent / "ca.pem")
        add_entra(workspace)
        extra = f"""  secure_cookies: false
  url: {base}
  signin:
    google:
      client_id: {GOOGLE_ID}
      client_secret_env: CADENCE_TEST_GOOGLE_SECRET
      discovery: {google.discovery}
      ca_bundle: ca.pem
    microsoft:
      account: entra
      discovery: {microsoft.discovery}
"""
        settings = config.load(web_workspace(workspace, NOW.isoformat(), extra))
        probes = Probes(lambda: (True, {"status": "ok"}), lambda: b"", "text/plain")
        server = Server(create(settings, probes, Web(settings)), "127.0.0.1", port)
        server.start()
        try:
            yield base, google, microsoft
        finally:
            server.stop()


@pytest.fixture
def app(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, OIDCServer, OIDCServer]]:
    monkeypatch.setenv("CADENCE_TEST_GOOGLE_SECRET", GOOGLE_SECRET)
    monkeypatch.setenv("CADENCE_TEST_MS_SECRET", MS_SECRET)
    with serving(workspace) as found:
        yield found


def test_google_and_microsoft_sign_in_in_chromium(app, browser) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    base, google, microsoft = app
    # the providers' certificates come from the tests' own CA; the app checks them
    # against ca.pem, the browser is told to accept them
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.goto(f"{base}/signin")
    accessible(page, "sign-in with providers")

    google.who = google_account(EMMA)
    page.get_by_role("link", name="Sign in with Google").click()
    page.get_by_role("heading", name="Hello, Emma Clarke").wait_for()
    assert page.url == f"{base}/"
    assert any(c["name"] == "cadence_session" and c["httpOnly"] for c in context.cookies())
    page.get_by_role("button", name="Sign out").click()

    microsoft.who = ms_account(BEN)
    page.goto(f"{base}/signin")
    page.get_by_role("link", name="Sign in with Microsoft").click()
    page.get_by_role("heading", name="Hallo Ben Ortiz").wait_for()  # Ben reads German
    page.get_by_role("button", name="Ben Ortiz abmelden").click()

    google.who = google_account("stranger@elsewhere.example")
    page.goto(f"{base}/signin")
    page.get_by_role("link", name="Sign in with Google").click()
    page.get_by_text("Cadence has no pages for this address").wait_for()
    accessible(page, "sign-in refused")
    page.goto(f"{base}/me")
    assert page.url == f"{base}/signin"
    context.close()


def main() -> None:  # pragma: no cover - `make screenshots`
    """Refresh docs/screenshots/web-sign-in-with-providers-*.png and the refusal."""
    import tempfile

    from agent.app.demo import create_workspace

    test_web_browser.SHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
    os.environ["CADENCE_TEST_GOOGLE_SECRET"] = GOOGLE_SECRET
    os.environ["CADENCE_TEST_MS_SECRET"] = MS_SECRET
    executable = chromium()
    assert executable, "no Chromium"
    with tempfile.TemporaryDirectory() as tmp:
        workspace = create_workspace(Path(tmp) / "demo", NOW)
        with serving(workspace) as found, launched(executable) as browser:
            test_google_and_microsoft_sign_in_in_chromium(found, browser)


if __name__ == "__main__":  # pragma: no cover
    main()
