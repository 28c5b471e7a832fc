"""Credentials, access, TLS, versions and throttling, as Exchange answers them."""

from __future__ import annotations

import contextlib
import gc
import os
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme
from exchangelib.protocol import Protocol

from agent.connectors.exchange import Ews, ExchangeCalendar
from agent.core.errors import ConfigError, PermanentError, TransientError
from agent.core.model import Interval, Person
from tests.exchange import fixtures
from tests.exchange.server import CHAOS_KINDS, EwsServer
from tests.test_soak import Clock

NTLM_USER = "CONTOSO\\svc-cadence"
WINDOW = Interval(datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 31, tzinfo=UTC))


def calendar(server: EwsServer, ca: Path, staff: list[Person], **over: object) -> ExchangeCalendar:
    return ExchangeCalendar(fixtures.ews(server, ca, **over), staff)


def test_a_wrong_password_is_permanent_and_fast_even_with_fault_tolerance(
    server: EwsServer, ca: Path, staff: list[Person]
) -> None:
    for max_wait in ("0s", "60s"):
        cal = ExchangeCalendar(
            Ews(
                fixtures.account(server, ca, max_wait=max_wait),
                Path,
                environ={fixtures.PASSWORD_ENV: "wrong"},
            ),
            staff,
        )
        began = time.monotonic()
        with pytest.raises(PermanentError, match=r"Unauthorized|credentials"):
            cal.changes(staff[0], None, WINDOW)
        cal.close()
        assert time.monotonic() - began < 5


def test_a_missing_password_names_the_variable(server: EwsServer, ca: Path) -> None:
    with pytest.raises(ConfigError, match=fixtures.PASSWORD_ENV):
        Ews(fixtures.account(server, ca), Path, environ={})


def test_impersonation_without_the_role_is_refused(
    server: EwsServer, ca: Path, staff: list[Person]
) -> None:
    server.impersonation = False
    cal = calendar(server, ca, staff)
    with pytest.raises(PermanentError, match="ErrorImpersonateUserDenied"):
        cal.changes(staff[0], None, WINDOW)
    cal.close()


def test_delegate_access_reaches_only_mailboxes_shared_with_the_user(
    staff: list[Person], tmp_path: Path
) -> None:
    ana, ben, _ = staff
    with fixtures.server_for(staff, username=ana.email) as server:
        ca = server.write_ca(tmp_path / "ca.pem")
        cal = calendar(server, ca, staff, access_type="delegate", username=ana.email)
        try:
            assert cal.changes(ana, None, WINDOW).full
            with pytest.raises(PermanentError, match="ErrorAccessDenied"):
                cal.changes(ben, None, WINDOW)
            server.add_delegate(ben.email, ana.email)
            assert cal.changes(ben, None, WINDOW).full
        finally:
            cal.close()
        assert all(r.impersonating is None for r in server.requests)


def test_an_unknown_version_is_a_config_error(server: EwsServer, ca: Path) -> None:
    with pytest.raises(ConfigError, match="version"):
        fixtures.ews(server, ca, version="Exchange 2003")


def test_without_a_version_exchangelib_asks_the_server_once(
    server: EwsServer, ca: Path, staff: list[Person]
) -> None:
    cal = calendar(server, ca, staff, version=None)
    try:
        cal.changes(staff[0], None, WINDOW)
        cal.changes(staff[1], None, WINDOW)
    finally:
        cal.close()
    assert server.counts["ConvertId"] == 1
    assert {r.api_version for r in server.requests if r.operation == "FindItem"} == {"Exchange2016"}


def test_an_untrusted_certificate_says_how_to_fix_it(
    server: EwsServer, tmp_path: Path, staff: list[Person]
) -> None:
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "other.pem"))
    cal = calendar(server, tmp_path / "other.pem", staff)
    with pytest.raises(PermanentError, match="ca_bundle"):
        cal.changes(staff[0], None, WINDOW)
    cal.close()


def test_ca_bundle_wins_over_requests_ca_bundle(
    server: EwsServer, ca: Path, tmp_path: Path, staff: list[Person]
) -> None:
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "wrong.pem"))
    os.environ["REQUESTS_CA_BUNDLE"] = str(tmp_path / "wrong.pem")
    cal = calendar(server, ca, staff)
    try:
        assert cal.changes(staff[0], None, WINDOW).full
    finally:
        cal.close()


def test_oauth_sends_the_bearer_token(staff: list[Person], tmp_path: Path) -> None:
    with fixtures.server_for(staff, token="opaque-token") as server:
        ca = server.write_ca(tmp_path / "ca.pem")
        cal = calendar(server, ca, staff, auth="oauth")
        try:
            assert cal.changes(staff[0], None, WINDOW).full
        finally:
            cal.close()


def test_server_busy_carries_the_back_off(server: EwsServer, ca: Path, staff: list[Person]) -> None:
    server.throttle("FindItem", back_off_ms=1500)
    cal = calendar(server, ca, staff)
    with pytest.raises(TransientError) as caught:
        cal.changes(staff[0], None, WINDOW)
    cal.close()
    assert caught.value.retry_after == 1.5


def test_fault_tolerance_waits_out_a_short_back_off(
    server: EwsServer, ca: Path, staff: list[Person]
) -> None:
    server.throttle("FindItem", back_off_ms=100)
    cal = calendar(server, ca, staff, max_wait="5s")
    try:
        assert cal.changes(staff[0], None, WINDOW).full
    finally:
        cal.close()
    assert server.counts["FindItem"] == 2


def test_a_lost_answer_is_transient(server: EwsServer, ca: Path, staff: list[Person]) -> None:
    server.lose_response("FindItem")
    cal = calendar(server, ca, staff)
    with pytest.raises(TransientError):
        cal.changes(staff[0], None, WINDOW)
    cal.close()


def test_a_deleted_mailbox_is_permanent(server: EwsServer, ca: Path, staff: list[Person]) -> None:
    gone = Person("gone@contoso.example", "Gone", "UTC", fixtures.HOURS)
    cal = calendar(server, ca, staff)
    with pytest.raises(PermanentError, match="ErrorNonExistentMailbox"):
        cal.changes(gone, None, WINDOW)
    cal.close()


@pytest.fixture
def _ntlm_sockets() -> Iterator[None]:
    """The NTLM handshake (requests_ntlm) leaves an SSLSocket object behind whose file
    descriptor is already closed ("unclosed <ssl.SSLSocket [closed] ...>"): collect it
    here, so its ResourceWarning does not surface in whichever test runs GC next."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.mark.usefixtures("_ntlm_sockets")
def test_ntlm_authenticates_the_connection_once(
    staff: list[Person], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = tmp_path / "ntlm-users"
    monkeypatch.setenv("NTLM_USER_FILE", str(users))  # read by the server's NTLM acceptor
    with fixtures.server_for(staff, username=NTLM_USER, ntlm_user_file=users) as server:
        ca = server.write_ca(tmp_path / "ca.pem")
        cal = calendar(server, ca, staff, auth="ntlm", username=NTLM_USER)
        try:
            for person in staff:
                assert cal.changes(person, None, WINDOW).full
        finally:
            cal.close()
        assert server.handshakes == 1 and server.counts["FindItem"] == 3


@pytest.mark.usefixtures("_ntlm_sockets")
def test_ntlm_with_a_wrong_password_is_permanent(
    staff: list[Person], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = tmp_path / "ntlm-users"
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    with fixtures.server_for(staff, username=NTLM_USER, ntlm_user_file=users) as server:
        account = fixtures.account(server, server.write_ca(tmp_path / "ca.pem"), auth="ntlm")
        account = account.model_copy(update={"username": NTLM_USER})
        cal = ExchangeCalendar(Ews(account, Path, environ={fixtures.PASSWORD_ENV: "wrong"}), staff)
        try:
            with pytest.raises(PermanentError, match=r"Unauthorized|credentials"):
                cal.changes(staff[0], None, WINDOW)
        finally:
            cal.close()
        assert server.handshakes == 0 and not server.counts


@pytest.mark.parametrize("kind", CHAOS_KINDS)
def test_every_fault_of_the_chaos_mode_is_transient(
    server: EwsServer, ca: Path, staff: list[Person], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Protocol, "TIMEOUT", 0.3)
    server.hold = 0.4
    clock = Clock()
    server.chaos(1.0, seed=1, clock=clock, kinds=(kind,))
    cal = calendar(server, ca, staff)
    try:
        if kind == "slow":  # added latency: the answer comes, late
            assert cal.changes(staff[0], None, WINDOW).full
        else:
            with pytest.raises(TransientError) as caught:
                cal.changes(staff[0], None, WINDOW)
            # only Exchange's own ErrorServerBusy certainly did nothing, and says how long
            assert caught.value.maybe_done is (kind != "busy")
            if kind == "busy":
                assert caught.value.retry_after == 2.0
        # a request before the back-off is over is counted as early
        server.chaos_rate = 0.0001
        with contextlib.suppress(TransientError):
            cal.changes(staff[0], None, WINDOW)
        assert bool(server.early) is (kind == "busy")
    finally:
        cal.close()
    assert server.chaos_count == {kind: 1}
