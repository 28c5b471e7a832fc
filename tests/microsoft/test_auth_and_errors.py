"""MSAL client credentials, certificates, the device-code flow, TLS trust and error mapping."""

from __future__ import annotations

import json
import os
import stat
import time
from datetime import timedelta
from pathlib import Path

import pytest
import trustme

from agent.connectors.microsoft import Graph, MicrosoftCalendar, delegated_scopes, device_code_login
from agent.connectors.microsoft.graph import discovery_kwargs
from agent.core.errors import ConfigError, PermanentError, TransientError
from agent.core.model import Interval, Person
from agent.core.retry import RetryPolicy
from tests.microsoft import fixtures
from tests.microsoft.conftest import NOW
from tests.microsoft.server import GraphServer

WINDOW = Interval(NOW - timedelta(days=30), NOW + timedelta(days=14))


def test_client_credentials_token_is_fetched_once_and_reused(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    for person in staff:
        cal.changes(person, None, WINDOW)
    assert server.counts["token"] == 1 and server.counts["openid"] == 1


def test_an_answer_held_past_the_configured_timeout_is_transient(
    server: GraphServer, ca: Path, staff: list[Person]
) -> None:
    g = fixtures.graph(server, ca, timeout=0.3)
    try:
        g.token()
        server.chaos(1.0, seed=0, kinds=("timeout",))  # answers held for 5 s
        began = time.monotonic()
        with pytest.raises(TransientError, match="Timeout") as caught:
            MicrosoftCalendar(g).changes(staff[0], None, WINDOW)
    finally:
        g.close()
    assert time.monotonic() - began < 2
    assert caught.value.maybe_done


def test_a_token_that_expires_mid_tick_is_fetched_again_and_the_call_repeated(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    cal.changes(staff[0], None, WINDOW)
    server.tokens.clear()  # expired or revoked before the expires_in MSAL remembers
    cal.changes(staff[1], None, WINDOW)  # no retry policy: the refresh is not a retry
    cal.changes(staff[2], None, WINDOW)
    assert server.counts["token"] == 2 and server.counts["delta"] == 4


def test_a_token_refused_again_after_a_refresh_is_permanent(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    server.chaos(1.0, seed=0, kinds=("expired",))  # every token dies on first use
    with pytest.raises(PermanentError, match="401 InvalidAuthenticationToken"):
        cal.changes(staff[0], None, WINDOW)
    assert server.counts["token"] == 2 and server.counts["delta"] == 2


def test_wrong_secret_is_a_permanent_error_that_does_not_show_the_secret(
    server: GraphServer, ca: Path, staff: list[Person]
) -> None:
    g = Graph(
        fixtures.account(server, ca),
        Path,
        RetryPolicy.none(),
        environ={fixtures.SECRET_ENV: "not-the-secret-value"},
    )
    try:
        with pytest.raises(PermanentError, match="invalid_client") as info:
            MicrosoftCalendar(g).changes(staff[0], None, WINDOW)
    finally:
        g.close()
    assert "not-the-secret-value" not in str(info.value)


def test_missing_secret_variable_is_a_config_error(server: GraphServer, ca: Path) -> None:
    with pytest.raises(ConfigError, match=fixtures.SECRET_ENV):
        Graph(fixtures.account(server, ca), Path, RetryPolicy.none(), environ={})
    with pytest.raises(ConfigError, match="token_cache"):
        Graph(
            fixtures.account(server, ca, client_secret_env=None),
            Path,
            RetryPolicy.none(),
            environ={},
        )


def test_certificate_credential_signs_a_client_assertion(
    tmp_path: Path, staff: list[Person]
) -> None:
    # Entra ID takes RSA certificates for client assertions
    leaf = trustme.CA().issue_cert("cadence-app.contoso.example", key_type=trustme.KeyType.RSA)
    pem = tmp_path / "app.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(pem))
    pem.chmod(0o600)
    with GraphServer(
        [p.email for p in staff],
        client_secret=None,
        certificate_pem=leaf.cert_chain_pems[0].bytes(),
    ) as server:
        ca = server.write_ca(tmp_path / "ca.pem")
        g = Graph(
            fixtures.account(server, ca, client_secret_env=None, client_certificate=str(pem)),
            Path,
            RetryPolicy.none(),
            environ={},
        )
        try:
            assert MicrosoftCalendar(g).changes(staff[0], None, WINDOW).full
        finally:
            g.close()
        assert server.counts["token"] == 1

        pem.chmod(0o644)
        with pytest.raises(ConfigError, match=f"chmod 600 {pem}"):
            Graph(
                fixtures.account(server, ca, client_secret_env=None, client_certificate=str(pem)),
                Path,
                RetryPolicy.none(),
                environ={},
            )


def test_requests_ca_bundle_in_the_environment_does_not_override_ca_bundle(
    server: GraphServer, ca: Path, staff: list[Person], tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    os.environ["REQUESTS_CA_BUNDLE"] = str(other)
    os.environ["CURL_CA_BUNDLE"] = str(other)
    g = fixtures.graph(server, ca)
    try:
        assert MicrosoftCalendar(g).changes(staff[0], None, WINDOW).full
    finally:
        g.close()


def test_an_untrusted_certificate_is_a_permanent_error_naming_ca_bundle(
    server: GraphServer, staff: list[Person], tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    g = fixtures.graph(server, other)
    try:
        with pytest.raises(PermanentError, match=r"TLS verification failed.*ca_bundle"):
            MicrosoftCalendar(g).changes(staff[0], None, WINDOW)
    finally:
        g.close()
    assert server.counts["delta"] == 0


def test_instance_discovery_only_for_microsoft_hosts(server: GraphServer, ca: Path) -> None:
    assert discovery_kwargs(fixtures.account(server, ca)) == {"instance_discovery": False}
    for host in (
        "https://login.microsoftonline.com",
        "https://login.microsoftonline.us",
        "https://login.chinacloudapi.cn",
    ):
        assert discovery_kwargs(fixtures.account(server, ca, authority=host)) == {}


def test_scopes_follow_the_graph_host(server: GraphServer, ca: Path) -> None:
    assert delegated_scopes(fixtures.account(server, ca, graph="https://graph.microsoft.com")) == [
        "Calendars.ReadWrite",
        "Mail.Send",
        "MailboxSettings.Read",
    ]
    us = delegated_scopes(fixtures.account(server, ca, graph="https://graph.microsoft.us"))
    assert us[0] == "https://graph.microsoft.us/Calendars.ReadWrite" and len(us) == 3


@pytest.mark.parametrize(("status", "after"), [(429, 7), (503, 3)])
def test_throttling_becomes_transient_error_with_retry_after(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person], status: int, after: int
) -> None:
    server.throttle("delta", times=1, retry_after=after, status=status)
    with pytest.raises(TransientError) as info:
        cal.changes(staff[0], None, WINDOW)
    assert info.value.retry_after == after


def test_retry_policy_waits_retry_after_then_succeeds(
    server: GraphServer, ca: Path, staff: list[Person]
) -> None:
    slept: list[float] = []
    g = fixtures.graph(
        server, ca, retry=RetryPolicy(attempts=4, sleep=slept.append, rand=lambda: 0.0)
    )
    server.throttle("delta", times=2, retry_after=5)
    try:
        assert MicrosoftCalendar(g).changes(staff[0], None, WINDOW).full
    finally:
        g.close()
    assert slept == [5.0, 5.0] and server.counts["delta"] == 3


def test_not_found_and_bad_request_are_permanent(
    cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    stranger = Person("nobody@contoso.example", "N", "UTC", fixtures.HOURS)
    with pytest.raises(PermanentError, match="404 ErrorInvalidUser"):
        cal.changes(stranger, None, WINDOW)


def test_device_code_login_writes_a_private_cache_used_silently_afterwards(
    server: GraphServer, ca: Path, staff: list[Person], tmp_path: Path
) -> None:
    cache = tmp_path / "state" / "msal-cache.json"
    acct = fixtures.account(server, ca, client_secret_env=None, token_cache=str(cache))
    shown: list[str] = []

    def show(message: str) -> None:
        shown.append(message)
        server.approve_device_codes()  # the person signs in on another device

    user = device_code_login(acct, Path, show=show)

    assert user == staff[0].email
    assert "enter the code" in shown[0]
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert "RefreshToken" in json.loads(cache.read_text())
    server.reset_counts()
    g = Graph(acct, Path, RetryPolicy.none(), environ={})
    try:
        assert MicrosoftCalendar(g).changes(staff[0], None, WINDOW).full
    finally:
        g.close()
    assert server.counts["devicecode"] == 0 and server.counts["delta"] == 1

    # a colleague's calendar is not read under a single person's sign-in; busy time is
    server.reset_counts()
    g = Graph(acct, Path, RetryPolicy.none(), environ={})
    cal = MicrosoftCalendar(g)
    try:
        first = cal.changes(staff[1], None, WINDOW)
        assert first.full and not first.events
        assert cal.changes(staff[1], first.cursor, WINDOW).quiet
        assert set(cal.busy(staff[:2], WINDOW)) == {staff[0].email, staff[1].email}
    finally:
        g.close()
    assert server.counts["delta"] == 0
    assert server.log[-1][1] == f"/v1.0/users/{staff[0].email}/calendar/getSchedule"

    cache.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Graph(acct, Path, RetryPolicy.none(), environ={})


def test_device_code_login_needs_a_token_cache(server: GraphServer, ca: Path) -> None:
    acct = fixtures.account(server, ca, client_secret_env=None)
    with pytest.raises(ConfigError, match="token_cache"):
        device_code_login(acct, Path, show=lambda m: None)


def test_retry_after_is_honoured_per_mailbox_across_calls(
    server: GraphServer, ca: Path, staff: list[Person]
) -> None:
    slept: list[float] = []
    g = fixtures.graph(server, ca, retry=RetryPolicy(attempts=1, sleep=slept.append))
    cal = MicrosoftCalendar(g)
    server.throttle("delta", times=1, retry_after=30)
    try:
        with pytest.raises(TransientError):
            cal.changes(staff[0], None, WINDOW)  # ana's mailbox says: wait 30 s
        cal.changes(staff[1], None, WINDOW)  # ben's is not held up
        assert slept == []
        cal.changes(staff[0], None, WINDOW)  # the next call to ana's waits first
    finally:
        g.close()
    assert len(slept) == 1 and 29 < slept[0] <= 30


def test_login_picks_the_microsoft_account_of_the_config(
    server: GraphServer, ca: Path, staff: list[Person], tmp_path: Path
) -> None:
    from agent.connectors.microsoft import login
    from agent.settings import config

    path = tmp_path / "cadence.yaml"
    path.write_text(
        f"""\
accounts:
  demo: {{provider: local}}
  me:
    provider: microsoft
    tenant: {server.tenant}
    client_id: {server.client_id}
    authority: {server.url}
    graph: {server.url}
    ca_bundle: {ca.name}
    token_cache: state/msal.json
people:
  - {{email: {staff[0].email}, account: me}}
"""
    )
    settings = config.load(path)
    with pytest.raises(ConfigError, match="no microsoft account named 'demo'"):
        login(settings, "demo")
    user = login(settings, show=lambda message: server.approve_device_codes())
    assert user == staff[0].email
    assert stat.S_IMODE((tmp_path / "state" / "msal.json").stat().st_mode) == 0o600


@pytest.mark.parametrize("kind", ["429", "500", "502", "503", "lost", "drop", "timeout"])
def test_a_sign_in_that_fails_for_now_fails_the_call_as_never_made(
    server: GraphServer, ca: Path, staff: list[Person], kind: str
) -> None:
    """The identity platform answers an error, a gateway's page, or nothing: the send it
    was for was never made (``maybe_done`` False, so the outbox sends it again later),
    and a later sign-in sends it once."""
    from agent.connectors.microsoft import MicrosoftMailer
    from tests.microsoft.test_mail import mail

    server.chaos(1.0, seed=0, kinds=(), token=(kind,))
    g = fixtures.graph(server, ca, timeout=0.3)
    try:
        with pytest.raises(TransientError) as caught:
            MicrosoftMailer(g).send(mail(staff))
    finally:
        g.close()
    assert not caught.value.maybe_done and server.counts["sendMail"] == 0
    assert server.token_faults and server.sent == []
    server.chaos(0.0, seed=0)
    later = fixtures.graph(server, ca, timeout=0.3)  # the next tick's sign-in
    try:
        MicrosoftMailer(later).send(mail(staff))
    finally:
        later.close()
    assert len(server.sent) == 1
