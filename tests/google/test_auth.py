"""authorize(): the installed-app consent flow against the fake Google authorization server."""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.connectors import google
from agent.core.errors import PermanentError
from agent.core.model import Interval
from agent.settings import config
from tests.environ import clean_environ
from tests.google.harness import Workspace, account_yaml, people_yaml, write_secret
from tests.google.server import AuthorizedUser, GoogleServer

WINDOW = Interval(datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 8, tzinfo=UTC))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleServer]:
    with clean_environ(), GoogleServer() as srv:
        # oauthlib insists on https for token endpoints; the fake one is plain http on loopback
        monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
        srv.state.add_calendar("ana@acme.example", "America/Sao_Paulo")
        yield srv


def client_file(tmp_path: Path, srv: GoogleServer, user: AuthorizedUser) -> Path:
    return write_secret(
        tmp_path / "client_secret.json",
        {
            "installed": {
                "client_id": user.client_id,
                "client_secret": user.client_secret,
                "auth_uri": srv.url + "o/oauth2/auth",
                "token_uri": srv.token_uri,
                "redirect_uris": ["http://localhost"],
            }
        },
    )


def test_console_flow_stores_a_0600_token_the_connector_uses(
    tmp_path: Path, server: GoogleServer
) -> None:
    user = server.state.add_user("ana@acme.example", set(google.scopes_for(False)))
    said: list[str] = []

    def ask(prompt: str) -> str:
        url = re.search(r"https?://\S+", "\n".join(said)).group(0)
        return server.tokens.consent(url, "ana@acme.example")

    token = google.authorize(
        client_file(tmp_path, server, user),
        tmp_path / "secrets" / "token.json",
        google.scopes_for(False),
        console=True,
        ask=ask,
        say=said.append,
    )
    assert os.stat(token).st_mode & 0o777 == 0o600
    data = json.loads(token.read_text())
    assert data["type"] == "authorized_user" and data["refresh_token"] == user.refresh_token
    assert data["token_uri"] == server.token_uri
    assert set(data["scopes"]) == set(google.scopes_for(False))
    assert not list(token.parent.glob(".*.tmp"))

    (tmp_path / "cadence.yaml").write_text(
        account_yaml(server, "secrets/token.json")
        + people_yaml((("ana@acme.example", "Ana", "America/Sao_Paulo"),))
    )
    ws = Workspace(server, config.load(tmp_path / "cadence.yaml"), tmp_path / "cadence.yaml")
    cal, _ = ws.connect()
    assert cal.changes(ws.person("ana"), None, WINDOW).full
    cal.close()
    assert server.state.counts["token"] == 1  # the code exchange; its access token is reused


def test_console_flow_refusal_is_reported(tmp_path: Path, server: GoogleServer) -> None:
    user = server.state.add_user("ana@acme.example", set(google.scopes_for(False)))
    with pytest.raises(PermanentError, match="access_denied"):
        google.authorize(
            client_file(tmp_path, server, user),
            tmp_path / "token.json",
            google.scopes_for(False),
            console=True,
            ask=lambda _: "http://127.0.0.1:1/?error=access_denied",
            say=lambda _: None,
        )
    assert not (tmp_path / "token.json").exists()


def test_browser_flow_receives_the_code_on_a_loopback_port(
    tmp_path: Path,
    server: GoogleServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    user = server.state.add_user("ana@acme.example", set(google.scopes_for(True)))
    browsers: list[threading.Thread] = []

    class Browser:
        def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
            redirect = server.tokens.consent(url, "ana@acme.example")
            assert redirect.startswith("http://127.0.0.1:")

            def visit() -> None:
                with urllib.request.urlopen(redirect) as answer:
                    assert b"authorized" in answer.read()

            browsers.append(threading.Thread(target=visit))
            browsers[-1].start()
            return True

    monkeypatch.setattr("webbrowser.get", lambda using=None: Browser())
    token = google.authorize(
        client_file(tmp_path, server, user),
        tmp_path / "token.json",
        google.scopes_for(True),
        console=False,
    )
    for b in browsers:
        b.join()
    data = json.loads(token.read_text())
    assert data["refresh_token"] == user.refresh_token and google.SCOPE_READ in data["scopes"]
    assert os.stat(token).st_mode & 0o777 == 0o600


def test_token_lacking_a_needed_scope_asks_to_authorize_again(
    tmp_path: Path, server: GoogleServer
) -> None:
    from agent.core.errors import ConfigError

    user = server.state.add_user("ana@acme.example", set(google.scopes_for(False)))
    write_secret(
        tmp_path / "token.json",
        {
            "type": "authorized_user",
            "client_id": user.client_id,
            "client_secret": user.client_secret,
            "refresh_token": user.refresh_token,
            "token_uri": server.token_uri,
            "scopes": [google.SCOPE_EVENTS],
        },
    )
    (tmp_path / "cadence.yaml").write_text(
        account_yaml(server, "token.json") + people_yaml((("ana@acme.example", "Ana", "UTC"),))
    )
    ws = Workspace(server, config.load(tmp_path / "cadence.yaml"), tmp_path / "cadence.yaml")
    with pytest.raises(ConfigError, match="cadence auth google"):
        ws.connect()
