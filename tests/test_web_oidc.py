"""Sign-in with Google and Microsoft (OpenID Connect) against local providers over HTTPS:
the whole authorization-code flow with PKCE through the real app and Authlib, and each
refusal: a wrong state, a forged signature, another audience or issuer, an expired ID
token, an unverified or unknown address, and a Microsoft account of another tenant."""

from __future__ import annotations

import json
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import trustme
from starlette.testclient import TestClient
from typer.testing import CliRunner

from agent.app.cli import app
from agent.core.errors import ConfigError
from agent.settings import config
from agent.web.app import Probes, create
from agent.web.base import Web
from tests.conftest import NOW
from tests.oidc.server import OIDCServer
from tests.web_helpers import web_workspace

EMMA, BEN = "emma@acme.example", "ben@acme.example"
TID = "6f1d3c52-8a47-4e0b-9c2e-3b5a7d9e1f20"
OTHER_TID = "0b9e2c1a-1111-4222-8333-444455556666"
GOOGLE_ID, GOOGLE_SECRET = "1234-web.apps.googleusercontent.example", "g-secret-value"
MS_ID, MS_SECRET = "00000000-0000-4000-8000-00000000c1d0", "m-secret-value"
BASE = "https://testserver"


@dataclass
class Site:
    client: TestClient
    google: OIDCServer
    microsoft: OIDCServer
    folder: Path
    verify: ssl.SSLContext

    def provider(self, name: str) -> OIDCServer:
        return self.google if name == "google" else self.microsoft

    def start(self, name: str) -> str:
        """Leave for the provider; the provider's authorize URL."""
        page = self.client.get(f"/signin/{name}", follow_redirects=False)
        assert page.status_code == 302, page.text
        location = page.headers["location"]
        assert location.startswith(self.provider(name).issuer + "/authorize?")
        return location

    def at_provider(self, authorize: str) -> str:
        """What the provider's login page does: the redirect back, with a code."""
        got = httpx2.get(authorize, verify=self.verify, follow_redirects=False)
        assert got.status_code == 302, got.text
        return str(got.headers["location"])

    def back(self, location: str) -> httpx2.Response:
        parts = urllib.parse.urlsplit(location)
        assert f"{parts.scheme}://{parts.netloc}" == BASE
        return self.client.get(f"{parts.path}?{parts.query}", follow_redirects=False)

    def sign_in(self, name: str) -> httpx2.Response:
        return self.back(self.at_provider(self.start(name)))


def section(google: OIDCServer, microsoft: OIDCServer) -> str:
    return f"""  url: {BASE}
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


def add_entra(path: Path, tenant: str = "acme.onmicrosoft.example") -> None:
    text = path.read_text().replace(
        "accounts:\n",
        "accounts:\n"
        f"  entra: {{provider: microsoft, tenant: {tenant}, client_id: '{MS_ID}',\n"
        "          client_secret_env: CADENCE_TEST_MS_SECRET, ca_bundle: ca.pem}\n",
        1,
    )
    path.write_text(text)


@pytest.fixture
def site(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("CADENCE_TEST_GOOGLE_SECRET", GOOGLE_SECRET)
    monkeypatch.setenv("CADENCE_TEST_MS_SECRET", MS_SECRET)
    ca = trustme.CA()
    google = OIDCServer(GOOGLE_ID, GOOGLE_SECRET, [f"{BASE}/signin/google/callback"], ca=ca)
    microsoft = OIDCServer(
        MS_ID, MS_SECRET, [f"{BASE}/signin/microsoft/callback"], prefix=f"/{TID}/v2.0", ca=ca
    )
    with google, microsoft:
        google.write_ca(workspace.parent / "ca.pem")
        add_entra(workspace)
        path = web_workspace(workspace, NOW.isoformat(), section(google, microsoft))
        settings = config.load(path)
        probes = Probes(lambda: (True, {"status": "ok"}), lambda: b"", "text/plain")
        verify = ssl.create_default_context(cafile=str(workspace.parent / "ca.pem"))
        with TestClient(create(settings, probes, Web(settings)), base_url=BASE) as client:
            yield Site(client, google, microsoft, workspace.parent, verify)


def google_account(email: str, verified: bool = True) -> dict[str, object]:
    return {"email": email, "email_verified": verified, "name": "Someone"}


def ms_account(email: str, tid: str = TID) -> dict[str, object]:
    return {"preferred_username": email, "tid": tid, "name": "Someone", "ver": "2.0"}


def assert_signed_in_as(site: Site, done: httpx2.Response, name: str) -> None:
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/"
    cookie = done.headers["set-cookie"]
    assert "cadence_session=" in cookie and "HttpOnly" in cookie and "Secure" in cookie
    home = site.client.get("/")
    assert home.status_code == 200 and name in home.text


def assert_refused(site: Site, done: httpx2.Response, *words: str) -> None:
    assert done.status_code == 403, done.text
    assert "cadence_session=" not in done.headers.get("set-cookie", "")
    for word in words:
        assert word in done.text, done.text
    assert site.client.get("/me", follow_redirects=False).headers["location"] == "/signin"


def test_the_sign_in_page_offers_the_configured_providers(site: Site) -> None:
    page = site.client.get("/signin")
    assert 'href="/signin/google"' in page.text and "Sign in with Google" in page.text
    assert 'href="/signin/microsoft"' in page.text and "Sign in with Microsoft" in page.text
    assert "Mail me a sign-in link" in page.text  # the demo account is a local one


def test_a_page_without_providers_shows_no_buttons(workspace: Path) -> None:
    settings = config.load(web_workspace(workspace, NOW.isoformat()))
    probes = Probes(lambda: (True, {}), lambda: b"", "text/plain")
    with TestClient(create(settings, probes, Web(settings)), base_url=BASE) as client:
        page = client.get("/signin")
        assert "Sign in with" not in page.text
        assert client.get("/signin/google", follow_redirects=False).status_code == 404


def test_google_sign_in(site: Site) -> None:
    site.google.who = google_account("Emma@acme.example")
    authorize = site.start("google")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize).query))
    assert query["code_challenge_method"] == "S256" and query["nonce"] and query["state"]
    assert query["redirect_uri"] == f"{BASE}/signin/google/callback"
    assert_signed_in_as(site, site.back(site.at_provider(authorize)), "Emma Clarke")
    assert ("POST", "/token") in site.google.requests and ("GET", "/keys") in site.google.requests


def test_microsoft_sign_in(site: Site) -> None:
    site.microsoft.who = ms_account(BEN)
    assert_signed_in_as(site, site.sign_in("microsoft"), "Ben Ortiz")


def test_a_wrong_state_is_refused(site: Site) -> None:
    site.google.who = google_account(EMMA)
    back = site.at_provider(site.start("google"))
    parts = urllib.parse.urlsplit(back)
    query = dict(urllib.parse.parse_qsl(parts.query))
    forged = urllib.parse.urlencode({**query, "state": "not-the-state-we-sent"})
    assert_refused(site, site.back(f"{BASE}{parts.path}?{forged}"), "State not equal")


def test_a_callback_from_another_browser_is_refused(site: Site) -> None:
    site.google.who = google_account(EMMA)
    back = site.at_provider(site.start("google"))
    site.client.cookies.clear()  # the state cookie stayed with the browser that left
    assert_refused(site, site.back(back), "State not equal")


def test_a_forged_signature_is_refused(site: Site) -> None:
    site.google.who = google_account(EMMA)
    site.google.faults = {"rogue": True}
    assert_refused(site, site.sign_in("google"), "bad_signature")


@pytest.mark.parametrize(
    "fault",
    [
        {"aud": "someone-else.apps.example"},
        {"aud": "someone-else.apps.example", "azp": MS_ID},
        {"iss": "https://accounts.evil.example"},
    ],
    ids=["audience", "audience-with-our-azp", "issuer"],
)
def test_another_audience_or_issuer_is_refused(site: Site, fault: dict[str, str]) -> None:
    site.microsoft.who = ms_account(BEN)
    site.microsoft.faults = fault
    claim = "aud" if "aud" in fault else "iss"
    assert_refused(site, site.sign_in("microsoft"), f"Invalid claim: &#39;{claim}&#39;")


def test_an_expired_id_token_is_refused(site: Site) -> None:
    site.google.who = google_account(EMMA)
    hour_ago = int(time.time()) - 3600
    site.google.faults = {"iat": hour_ago - 3600, "exp": hour_ago}
    assert_refused(site, site.sign_in("google"), "expired")


def test_an_unverified_google_address_is_refused(site: Site) -> None:
    site.google.who = google_account(EMMA, verified=False)
    assert_refused(site, site.sign_in("google"), "email_verified")


def test_an_unknown_address_is_refused_with_a_clear_page(site: Site) -> None:
    site.google.who = google_account("stranger@elsewhere.example")
    assert_refused(site, site.sign_in("google"), "stranger@elsewhere.example", "no pages")


def test_a_microsoft_account_of_another_tenant_is_refused(site: Site) -> None:
    site.microsoft.who = ms_account(BEN, tid=OTHER_TID)
    assert_refused(site, site.sign_in("microsoft"), "another organization")


def test_starting_sign_ins_is_rate_limited(site: Site) -> None:
    for _ in range(20):
        site.start("google")
    refused = site.client.get("/signin/google", follow_redirects=False)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "900"


def test_a_missing_client_secret_stops_the_app(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CADENCE_TEST_MS_SECRET")
    settings = config.load(site.folder / "cadence.yaml")
    probes = Probes(lambda: (True, {}), lambda: b"", "text/plain")
    with pytest.raises(ConfigError, match="CADENCE_TEST_MS_SECRET"):
        create(settings, probes, Web(settings))


def test_the_microsoft_account_must_exist(workspace: Path) -> None:
    text = workspace.read_text() + "web:\n  signin:\n    microsoft: {account: nowhere}\n"
    workspace.write_text(text)
    with pytest.raises(ConfigError, match=r"web\.signin\.microsoft\.account.*nowhere"):
        config.load(workspace)


def test_the_google_client_comes_from_its_json_file(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = site.folder / "cadence.yaml"
    text = path.read_text()
    client = site.folder / "google-web-client.json"
    web = {"client_id": GOOGLE_ID, "client_secret": GOOGLE_SECRET, "redirect_uris": []}
    client.write_text(json.dumps({"web": web}))
    client.chmod(0o600)
    path.write_text(
        text.replace(
            f"client_id: {GOOGLE_ID}\n      client_secret_env: CADENCE_TEST_GOOGLE_SECRET",
            "client_file: google-web-client.json",
        )
    )
    monkeypatch.delenv("CADENCE_TEST_GOOGLE_SECRET")
    settings = config.load(path)
    probes = Probes(lambda: (True, {}), lambda: b"", "text/plain")
    with TestClient(create(settings, probes, Web(settings)), base_url=BASE) as other:
        site.client = other
        site.google.who = google_account(EMMA)
        assert_signed_in_as(site, site.sign_in("google"), "Emma Clarke")
    client.chmod(0o644)  # a secret others can read stops the app
    with pytest.raises(ConfigError, match="chmod 600"):
        create(settings, probes, Web(settings))


def test_cadence_check_names_the_missing_secret(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CADENCE_TEST_GOOGLE_SECRET")
    path = site.folder / "cadence.yaml"
    result = CliRunner().invoke(app, ["check", "--config", str(path)])
    assert result.exit_code == 2
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "google:" in text)
    assert f"{path}:{line}" in result.output
    assert "web.signin.google.client_secret_env" in result.output
    assert "CADENCE_TEST_GOOGLE_SECRET" in result.output
    monkeypatch.setenv("CADENCE_TEST_GOOGLE_SECRET", GOOGLE_SECRET)
    assert CliRunner().invoke(app, ["check", "--config", str(path)]).exit_code == 0


def test_a_tenant_of_any_organization_is_refused(workspace: Path) -> None:
    add_entra(workspace, tenant="organizations")
    workspace.write_text(
        workspace.read_text() + "web:\n  signin:\n    microsoft: {account: entra}\n"
    )
    with pytest.raises(ConfigError, match="organization's own tenant"):
        config.load(workspace)


def test_a_provider_that_cannot_be_reached_gets_a_page_saying_so(site: Site) -> None:
    site.google.__exit__()  # down before its discovery document was read (closing twice is fine)
    got = site.client.get("/signin/google", follow_redirects=False)
    assert got.status_code == 502 and "Google cannot be reached" in got.text


def test_sign_ins_per_address_are_rate_limited(site: Site) -> None:
    site.microsoft.who = ms_account(BEN)
    for _ in range(5):
        assert_signed_in_as(site, site.sign_in("microsoft"), "Ben Ortiz")
    site.client.cookies.clear()
    refused = site.sign_in("microsoft")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "900"
    assert "cadence_session=" not in refused.headers.get("set-cookie", "")


def test_microsoft_trusts_the_sign_in_name_before_the_profile_address(site: Site) -> None:
    # an account of the tenant whose profile claims a colleague's address
    site.microsoft.who = {**ms_account("stranger@acme.example"), "email": BEN}
    assert_refused(site, site.sign_in("microsoft"), "stranger@acme.example", "no pages")
    site.microsoft.who = {"email": BEN, "tid": TID}  # no sign-in name: the address given
    assert_signed_in_as(site, site.sign_in("microsoft"), "Ben Ortiz")
