"""The LDAP source against a real OpenLDAP slapd: a full read in pages, members by group
and filter, manager DNs resolved to addresses, TLS, clean errors, and a directory sync
through ``cadence`` that books a joiner's first Align on the local provider."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from agent.app.cli import app
from agent.connectors import directory as sources
from agent.core.errors import ConfigError, PermanentError, TransientError
from agent.core.retry import RetryPolicy
from agent.rules import directory as rules
from agent.settings.schema import LdapSource
from agent.store.sqlite import Store
from tests.directory.slapd import (
    GROUP_DN,
    MISSING,
    READER_DN,
    READER_PASSWORD,
    Slapd,
    free_port,
    person,
)

needs_slapd = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

ORG = Path(__file__).with_name("acme.ldif")
PEOPLE = "ou=people,dc=acme,dc=example"


@pytest.fixture(scope="module")
def slapd() -> Iterator[Slapd]:
    with Slapd(page_limit=4) as server:
        server.load(ORG)
        yield server


def source(server: Slapd, **kw: Any) -> LdapSource:
    options: dict[str, Any] = {
        "kind": "ldap",
        "url": server.url,
        "bind_dn": READER_DN,
        "password_env": "LDAP_PASSWORD",
        "base_dn": PEOPLE,
        "members": {"groups": [GROUP_DN]},
        "attributes": {"timezone": "acmeTimeZone"},
        "page_size": 3,
    }
    options.update(kw)
    return LdapSource.model_validate(options)


def read(src: LdapSource, base: Path = Path("."), **kw: Any) -> sources.Read:
    ctx = sources.DirectoryContext(base=base, retry=kw.pop("retry", RetryPolicy.none()))
    return sources.read(src, ctx)


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LDAP_PASSWORD", READER_PASSWORD)


@needs_slapd
def test_a_full_read_in_pages(slapd: Slapd, caplog: pytest.LogCaptureFixture) -> None:
    before = len(slapd.searches(PEOPLE))
    with caplog.at_level(logging.WARNING, "cadence.directory"):
        got = read(source(slapd))
    by = {e.email: e for e in got.entries}
    # six people with mail under the base; Nora has none, Olaf is outside the base
    assert set(by) == {
        "boss@acme.example",
        "lea@acme.example",
        "max@acme.example",
        "ana.alves@acme.example",
        "ben@acme.example",
        "zoe@acme.example",
    }
    assert "uid=nomail,ou=people,dc=acme,dc=example has no usable mail; skipped" in caplog.text
    assert READER_PASSWORD not in caplog.text
    zoe = by["zoe@acme.example"]
    assert (zoe.name, zoe.country, zoe.timezone) == ("Zoë Zürcher", "CH", "Europe/Zurich")
    assert zoe.ref == "uid=zoe,ou=people,dc=acme,dc=example"
    assert zoe.manager_ref == "uid=lea,ou=people,dc=acme,dc=example"
    ana = by["ana.alves@acme.example"]
    assert (ana.language, ana.country, ana.timezone) == ("de", "DE", "Europe/Berlin")
    # `co` names the country when `c` is missing
    assert by["ben@acme.example"].country == "US"
    assert by["max@acme.example"].timezone is None
    # 7 people in pages of 3 and 5 members in pages of 3: five searches the server answered,
    # and the bind: the server's own limit is 4 entries a search
    assert len(slapd.searches(PEOPLE)) - before == 3 + 2
    assert got.requests == 1 + 3 + 2
    assert got.full and got.cursor is None


@needs_slapd
def test_a_search_that_would_exceed_the_servers_limit_is_a_clean_error(slapd: Slapd) -> None:
    with pytest.raises(PermanentError, match=r"lower page_size to the server's limit") as err:
        read(source(slapd, page_size=500))
    assert slapd.url in str(err.value)


@needs_slapd
def test_members_by_group_and_by_filter(slapd: Slapd) -> None:
    def members(**kw: Any) -> set[str]:
        return {e.email.split("@")[0] for e in read(source(slapd, **kw)).entries if e.member}

    assert members() == {"lea", "ana.alves", "ben", "zoe"}
    # the group and a filter: both must hold
    assert members(members={"groups": [GROUP_DN], "filter": "(c=DE)"}) == {"lea", "ana.alves"}
    # a filter alone
    assert members(members={"filter": "(preferredLanguage=*)"}) == {"lea", "ana.alves", "ben"}
    # no members: everyone is in
    assert members(members=None) == {"boss", "lea", "max", "ana.alves", "ben", "zoe"}
    # the group's DN is matched by the server, whatever its case
    upper = {"groups": [GROUP_DN.upper()]}
    assert members(members=upper) == {"lea", "ana.alves", "ben", "zoe"}
    # a narrower filter of who is read
    got = read(source(slapd, filter="(&(objectClass=person)(c=DE))"))
    assert {e.email for e in got.entries} == {
        "boss@acme.example",
        "lea@acme.example",
        "max@acme.example",
        "ana.alves@acme.example",
    }


@needs_slapd
def test_manager_dns_resolve_to_addresses(slapd: Slapd) -> None:
    people = rules.resolve(read(source(slapd)).entries)
    managers = {email: e.manager for email, e in people.items()}
    assert managers == {
        "boss@acme.example": None,
        "lea@acme.example": "boss@acme.example",
        "max@acme.example": "boss@acme.example",
        "ana.alves@acme.example": "lea@acme.example",
        # written UID=Lea, OU=People, DC=acme, DC=example in the directory
        "ben@acme.example": "lea@acme.example",
        "zoe@acme.example": "lea@acme.example",
    }
    assert rules.reporting(people) == {
        "lea@acme.example": "boss@acme.example",
        "ana.alves@acme.example": "lea@acme.example",
        "ben@acme.example": "lea@acme.example",
        "zoe@acme.example": "lea@acme.example",
    }


@needs_slapd
def test_a_bad_password_a_bad_base_and_no_server_are_clean_errors(
    slapd: Slapd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LDAP_PASSWORD", "not-the-password")
    with pytest.raises(PermanentError) as err:
        read(source(slapd))
    text = str(err.value)
    assert text == (
        f"ldap server {slapd.url}: bind as {READER_DN} refused (invalid credentials); "
        "check bind_dn and the password"
    )
    monkeypatch.setenv("LDAP_PASSWORD", READER_PASSWORD)

    with pytest.raises(PermanentError, match="base_dn ou=nobody,dc=acme,dc=example does not exist"):
        read(source(slapd, base_dn="ou=nobody,dc=acme,dc=example"))

    # nothing listens: worth retrying, within the policy, then given up
    pauses: list[float] = []
    policy = RetryPolicy(attempts=3, base=0.01, sleep=pauses.append)
    closed = f"ldap://127.0.0.1:{free_port()}"
    with pytest.raises(TransientError) as down:
        read(source(slapd, url=closed, timeout=2), retry=policy)
    assert str(down.value).startswith(f"ldap server {closed}: connect: ")
    assert "\n" not in str(down.value) and READER_PASSWORD not in str(down.value)
    assert len(pauses) == 2

    # an anonymous bind may not read people here: the server hides the base
    with pytest.raises(PermanentError, match=r"does not exist \(or the account may not read it\)"):
        read(source(slapd, bind_dn=None, password_env=None))


@needs_slapd
def test_the_password_from_a_private_file(slapd: Slapd, tmp_path: Path) -> None:
    secret = tmp_path / "ldap.secret"
    secret.write_text(READER_PASSWORD + "\n")
    secret.chmod(0o644)
    src = source(slapd, password_env=None, password_file="ldap.secret")
    with pytest.raises(ConfigError, match="readable by other users; restrict it with: chmod 600"):
        read(src, tmp_path)
    secret.chmod(0o600)
    assert len(read(src, tmp_path).entries) == 6
    secret.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read(src, tmp_path)


def test_the_settings_refuse_what_cannot_sign_in() -> None:
    base = {"kind": "ldap", "url": "ldap://dir.example", "base_dn": "dc=example"}
    for extra, message in [
        ({"bind_dn": "cn=x"}, "bind_dn needs password_env or password_file"),
        ({"password_env": "P"}, "a password needs bind_dn"),
        ({"bind_dn": "cn=x", "password_env": "P", "password_file": "f"}, "not both"),
        ({"url": "https://dir.example"}, "not an ldap:// or ldaps:// URL"),
        ({"url": "ldap://dir.example/dc=example"}, "base_dn says where"),
        ({"filter": "objectClass=person"}, "not an LDAP filter in parentheses"),
        ({"members": {}}, "name groups, a filter or both"),
        ({"url": "ldaps://dir.example", "start_tls": True}, "start_tls is for ldap://"),
    ]:
        with pytest.raises(ValidationError, match=message):
            LdapSource.model_validate({**base, **extra})


# --- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Slapd, Path]]:
    import trustme

    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
    cert.private_key_pem.write_to_path(str(folder / "server.key"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    with Slapd(tls=(folder / "server.pem", folder / "server.key")) as server:
        server.add(person("ana", "Ana Alves", manager=None))
        yield server, folder


@needs_slapd
def test_ldaps_and_start_tls_check_the_certificate(tls_slapd: tuple[Slapd, Path]) -> None:
    server, folder = tls_slapd
    ldaps = f"ldaps://127.0.0.1:{server.ldaps_port}"
    for options in ({"url": ldaps}, {"start_tls": True}):
        src = source(server, members=None, ca_bundle="ca.pem", **options)
        assert [e.email for e in read(src, folder).entries] == ["ana@acme.example"]
        with pytest.raises(PermanentError, match="not trusted or does not name the host"):
            read(source(server, members=None, **options), folder)
    # the certificate names 127.0.0.1, not the other address the server listens on
    other = ldaps.replace("127.0.0.1", "127.0.0.2")
    with pytest.raises(PermanentError, match="not trusted or does not name the host"):
        read(source(server, members=None, ca_bundle="ca.pem", url=other), folder)


# --- through cadence --------------------------------------------------------------------

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
CONFIG = """\
timezone: Europe/Berlin
store: var/cadence.db
accounts:
  team: {{provider: local, calendars: calendars, outbox: outbox}}
defaults:
  working_hours: {{mon-fri: "09:00-17:00"}}
directory:
  source:
    kind: ldap
    url: {url}
    bind_dn: {reader}
    password_env: LDAP_PASSWORD
    base_dn: {base}
    members: {{groups: ["{group}"]}}
    attributes: {{timezone: acmeTimeZone}}
    page_size: 3
  program: development
  first_within: 30d
programs:
  development:
    series:
      deep_dive:
        every: 90d
        duration: 60m
        title: "Development {{{{ stage | title }}}}: {{{{ employee.first_name }}}} & {{{{ partner.first_name }}}}"
        stages: [align, advance, amplify, advocate]
        match: '(?i)\\b(align|advance|amplify|advocate)\\b'
"""


def cadence(folder: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, [*args, "--config", str(folder / "cadence.yaml")])
    assert result.exit_code == code, result.output
    return result.output


def at(days: int) -> str:
    return (T0 + timedelta(days=days)).isoformat()


@needs_slapd
def test_the_sync_through_cadence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "calendars").mkdir()
    with Slapd() as server:
        server.load(ORG)
        (tmp_path / "cadence.yaml").write_text(
            CONFIG.format(url=server.url, reader=READER_DN, base=PEOPLE, group=GROUP_DN)
        )
        out = cadence(tmp_path, "directory", "sync", "--now", at(0))
        assert "joins: ana.alves@acme.example (leader lea@acme.example)" in out
        assert "0 -> 6 people; 6 joined" in out and "applied" in out
        cadence(tmp_path, "run", "--once", "--now", at(17))
        lines = {b.relationship for b in bookings(tmp_path) if b.stage == "align"}
        assert lines == {
            "lea@acme.example/boss@acme.example",
            "ana.alves@acme.example/lea@acme.example",
            "ben@acme.example/lea@acme.example",
            "zoe@acme.example/lea@acme.example",
        }

        # a joiner: in the directory and the group; the next sync starts the line, and
        # the tick books the first Align within first_within of the day the line started
        server.add(
            person("new", "Nils New", manager="uid=max,ou=people,dc=acme,dc=example"),
            f"dn: {GROUP_DN}\nchangetype: modify\nadd: member\n"
            "member: uid=new,ou=people,dc=acme,dc=example\n",
        )
        out = cadence(tmp_path, "directory", "sync", "--now", at(20))
        assert "joins: new@acme.example (leader max@acme.example)" in out
        cadence(tmp_path, "run", "--once", "--now", at(40))
        (joiner,) = [b for b in bookings(tmp_path) if b.relationship.startswith("new@")]
        assert joiner.relationship == "new@acme.example/max@acme.example"
        assert joiner.stage == "align" and joiner.series == "deep_dive"
        assert T0 + timedelta(days=40) < joiner.start <= T0 + timedelta(days=50)
        assert "Nils" in (tmp_path / "calendars" / "max@acme.example.ics").read_text()

        # a refused bind changes nothing: the last read stays in place
        monkeypatch.setenv("LDAP_PASSWORD", "expired")
        out = cadence(tmp_path, "directory", "sync", "--now", at(41), code=1)
        assert out.strip() == (
            f"error: directory read failed: ldap server {server.url}: bind as {READER_DN} "
            "refused (invalid credentials); check bind_dn and the password"
        )
        monkeypatch.setenv("LDAP_PASSWORD", READER_PASSWORD)
        assert "7 -> 7 people; 0 joined, 0 left" in cadence(
            tmp_path, "directory", "diff", "--now", at(41)
        )

        # a broken filter reads nobody: the guard holds it, and nothing is cancelled
        config = tmp_path / "cadence.yaml"
        config.write_text(
            config.read_text().replace(
                "page_size: 3", "page_size: 3\n    filter: (objectClass=nobody)"
            )
        )
        out = cadence(tmp_path, "directory", "sync", "--now", at(42), code=1)
        assert "7 -> 0 people" in out and "held:" in out and "nothing applied" in out
        assert len(bookings(tmp_path)) == 5


def bookings(folder: Path) -> list[Any]:
    store = Store(folder / "var" / "cadence.db")
    try:
        return list(store.bookings())
    finally:
        store.close()
