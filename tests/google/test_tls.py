"""ca_bundle: a TLS-intercepting proxy or private endpoint with its own certificate authority."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from agent.core.errors import ConfigError, PermanentError
from agent.core.model import Interval
from tests.google.harness import workspace

WINDOW = Interval(datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 8, tzinfo=UTC))


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def test_https_endpoints_trusted_through_ca_bundle(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    extra = "    ca_bundle: ca.pem\n"
    with workspace(tmp_path, account_extra=extra, tls=server_context(ca)) as ws:
        assert ws.server.url.startswith("https://")
        cal, _ = ws.connect()
        ana = ws.person("ana")
        ws.server.add_event(ana.email, "Lunch", WINDOW.start, WINDOW.start + timedelta(hours=1))
        assert [e.title for e in cal.changes(ana, None, WINDOW).events] == ["Lunch"]
        assert cal.busy(ws.people, WINDOW)[ana.email]
        cal.close()
        # the token came over TLS as well: the key's token_uri is on the same server
        assert ws.server.state.counts["token"] == 1


def test_untrusted_certificate_says_to_set_ca_bundle(tmp_path: Path) -> None:
    with workspace(tmp_path, tls=server_context(trustme.CA())) as ws:
        cal, _ = ws.connect()
        with pytest.raises(PermanentError, match="ca_bundle"):
            cal.changes(ws.person("ana"), None, WINDOW)
        cal.close()


def test_missing_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    with (
        workspace(tmp_path, account_extra="    ca_bundle: nowhere.pem\n") as ws,
        pytest.raises(ConfigError, match=r"nowhere\.pem"),
    ):
        ws.connect()


def test_a_token_that_expires_mid_tick_is_refreshed_over_tls_inside_a_batch(
    tmp_path: Path,
) -> None:
    """Each part of a batch answers 401; the new token comes through the account's own
    connection (its ca_bundle and timeout), not one the client library makes up."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    extra = "    ca_bundle: ca.pem\n"
    long = Interval(WINDOW.start, WINDOW.start + timedelta(days=120))  # two free/busy queries
    with workspace(tmp_path, account_extra=extra, tls=server_context(ca)) as ws:
        cal, _ = ws.connect()
        ana = ws.person("ana")
        ws.server.add_event(ana.email, "Lunch", WINDOW.start, WINDOW.start + timedelta(hours=1))
        cal.busy(ws.people, long)
        ws.server.state.tokens.clear()  # expired or revoked before the expiry the client keeps
        busy = cal.busy(ws.people, long)
        cal.close()
        assert busy[ana.email]
        assert ws.server.state.counts["token"] == 2  # one refresh
