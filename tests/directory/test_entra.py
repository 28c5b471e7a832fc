"""The Entra ID source against the fake Graph: a full read with paging, deltas with
changes and removals, an expired delta link, group membership, and refused sign-ins."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.app.cli import app
from agent.connectors.directory import DirectoryContext, Read, read
from agent.core.directory import Entry
from agent.core.errors import PermanentError
from agent.core.retry import RetryPolicy
from agent.rules import directory as rules
from agent.settings.schema import EntraSource
from tests.directory.test_lifecycle import CONFIG, PLAN, bookings, cadence
from tests.microsoft.fixtures import SECRET_ENV, account
from tests.microsoft.server import GraphServer

DOMAIN = "contoso.example"
FILLERS = 230  # with the five below: three pages of 100 with the manager expanded


def mail(who: str) -> str:
    return f"{who}@{DOMAIN}"


def org(server: GraphServer) -> None:
    d = server.directory
    d.add_user(mail("boss"), "Bo Boss", usageLocation="DE", preferredLanguage="de-DE")
    d.add_user(mail("lea"), "Lea Lead", mail("boss"), usageLocation="DE")
    d.add_user(mail("max"), "Max Lead", mail("boss"), country="United States")
    d.add_user(mail("ana"), "Ana Alves", mail("lea"), usageLocation="pt")
    d.add_user(mail("ben"), "Ben Berg", mail("lea"), usageLocation="US")
    for n in range(FILLERS):
        d.add_user(mail(f"u{n:03d}"), f"User {n}", mail("max"))
    d.add_group("eng-group", [mail("ana"), mail("ben")])
    d.add_group("program-group", [mail("lea"), "eng-group"])


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphServer]:
    with GraphServer([]) as s:
        monkeypatch.setenv(SECRET_ENV, s.client_secret or "")
        org(s)
        yield s


def context(server: GraphServer, tmp_path: Path, **over: str) -> DirectoryContext:
    ca = server.write_ca(tmp_path / "graph-ca.pem")
    return DirectoryContext(
        base=tmp_path, accounts={"work": account(server, ca, **over)}, retry=RetryPolicy.none()
    )


SOURCE = EntraSource(kind="entra", account="work", group="program-group")


def sync(
    ctx: DirectoryContext, cursor: str | None, known: dict[str, Entry]
) -> tuple[Read, dict[str, Entry]]:
    """One read, laid over the last as the directory sync does."""
    ctx.known = known
    got = read(SOURCE, ctx, cursor)
    raw = got.entries if got.full else rules.merged(known, got.entries, got.removed)
    return got, rules.resolve(raw)


def test_a_full_read_pages_through_users_and_members(server: GraphServer, tmp_path: Path) -> None:
    got, people = sync(context(server, tmp_path), None, {})
    assert got.full and got.cursor and "$deltatoken=" in got.cursor
    assert len(people) == FILLERS + 5
    assert server.counts["users.list"] == 3  # 100 a page with $expand, whatever $top asks
    assert server.counts["users.delta"] == 1  # $deltatoken=latest: a link, no data
    assert server.counts["groups.transitiveMembers"] == 1
    assert got.requests == 5
    ana = people[mail("ana")]
    assert ana.manager == mail("lea") and ana.name == "Ana Alves"
    assert ana.country == "PT" and ana.ref == server.directory.id_of(mail("ana"))
    assert people[mail("boss")].manager is None and people[mail("boss")].language == "de-DE"
    assert people[mail("max")].country is None  # a country name, not a code: not guessed
    # who is in: the group's own members and those of the group nested in it
    assert {e for e, p in people.items() if p.member} == {mail("lea"), mail("ana"), mail("ben")}
    assert rules.reporting(people) == {
        mail("lea"): mail("boss"),
        mail("ana"): mail("lea"),
        mail("ben"): mail("lea"),
    }


def test_a_delta_brings_changes_and_removals_only(server: GraphServer, tmp_path: Path) -> None:
    ctx = context(server, tmp_path)
    first, people = sync(ctx, None, {})
    server.reset_counts()
    quiet, same = sync(ctx, first.cursor, people)
    assert not quiet.full and quiet.entries == [] and quiet.removed == []
    assert same == people
    # each read signs in afresh: the authority's configuration and a token
    assert dict(server.counts) == {
        "openid": 1,
        "token": 1,
        "users.delta": 1,
        "groups.transitiveMembers": 1,
    }

    d = server.directory
    d.delta_page = 2  # the round comes in pages linked by nextLink
    d.set_manager(mail("ana"), mail("max"))
    d.update(mail("ben"), displayName="Ben Berg-Olsen")
    d.delete(mail("u007"))
    d.add_user(mail("zoe"), "Zoe New", mail("lea"))
    d.add_group("eng-group", [mail("ana"), mail("ben"), mail("zoe")])
    d.update(mail("u008"), accountEnabled=False)
    server.reset_counts()
    got, after = sync(ctx, quiet.cursor, same)
    assert not got.full
    assert server.counts["users.delta"] == 3 and "users.list" not in server.counts
    assert sorted(e.email for e in got.entries) == [mail("ana"), mail("ben"), mail("zoe")]
    assert sorted(got.removed) == [mail("u007"), mail("u008")]
    assert after[mail("ana")].manager == mail("max")
    assert after[mail("ben")].manager == mail("lea")  # unchanged: kept from the last read
    assert after[mail("ben")].name == "Ben Berg-Olsen"
    assert after[mail("zoe")].manager == mail("lea") and after[mail("zoe")].member
    assert mail("u007") not in after and mail("u008") not in after
    diff = rules.diff(people, after)
    assert [e.email for e in diff.joined] == [mail("zoe")]
    assert sorted(e.email for e in diff.left) == [mail("u007"), mail("u008")]
    assert [(c.line, c.successor) for c in diff.manager_changes] == [
        ((mail("ana"), mail("lea")), mail("max"))
    ]


def test_a_manager_removed_and_a_membership_flip_reach_the_read(
    server: GraphServer, tmp_path: Path
) -> None:
    ctx = context(server, tmp_path)
    first, people = sync(ctx, None, {})
    server.directory.set_manager(mail("ben"), None)
    server.directory.add_group("eng-group", [mail("ben")])  # Ana leaves the program
    got, after = sync(ctx, first.cursor, people)
    assert {e.email for e in got.entries} == {mail("ana"), mail("ben")}
    assert after[mail("ben")].manager is None
    assert not after[mail("ana")].member and after[mail("ana")].manager == mail("lea")
    assert rules.reporting(after) == {mail("lea"): mail("boss")}


def test_an_address_change_keeps_the_reports_line(server: GraphServer, tmp_path: Path) -> None:
    ctx = context(server, tmp_path)
    first, people = sync(ctx, None, {})
    server.directory.update(mail("lea"), mail=mail("lea.lead"))
    got, after = sync(ctx, first.cursor, people)
    assert got.removed == [mail("lea")]
    assert after[mail("ana")].manager == mail("lea.lead")
    assert after[mail("lea.lead")].manager == mail("boss")


def test_an_expired_delta_link_reads_everything_again(
    server: GraphServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = context(server, tmp_path)
    first, people = sync(ctx, None, {})
    server.directory.expire()
    server.directory.set_manager(mail("ana"), mail("max"))
    server.reset_counts()
    with caplog.at_level(logging.WARNING, "cadence.directory"):
        got, after = sync(ctx, first.cursor, people)
    assert got.full and got.cursor != first.cursor
    assert "delta link expired" in caplog.text
    # the refused delta link, the new one, three pages of users, the members
    assert dict(server.counts) == {
        "openid": 1,
        "token": 1,
        "users.delta": 2,
        "users.list": 3,
        "groups.transitiveMembers": 1,
    }
    assert after[mail("ana")].manager == mail("max") and len(after) == len(people)


def test_a_refused_sign_in_is_one_clean_line(server: GraphServer, tmp_path: Path) -> None:
    ctx = context(server, tmp_path)
    server.client_secret = "another-secret"
    with pytest.raises(PermanentError) as info:
        read(SOURCE, ctx, None)
    text = str(info.value)
    assert "invalid_client" in text and "\n" not in text
    assert "s3cret" not in text and "another-secret" not in text


def test_a_missing_permission_names_the_ones_needed(server: GraphServer, tmp_path: Path) -> None:
    server.app_permissions = {"User.Read.All"}  # GroupMember.Read.All not granted
    with pytest.raises(PermanentError) as info:
        read(SOURCE, context(server, tmp_path), None)
    text = str(info.value)
    assert "403 Authorization_RequestDenied" in text and "GroupMember.Read.All" in text
    assert "\n" not in text


# --- the lifecycle on Microsoft 365 ---------------------------------------------------

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
PROGRAM = CONFIG[CONFIG.index("programs:") :]
M365 = f"""timezone: Europe/Berlin
store: var/cadence.db
accounts:
  m365:
    provider: microsoft
    tenant: {{tenant}}
    client_id: {{client_id}}
    client_secret_env: {SECRET_ENV}
    authority: {{url}}
    graph: {{url}}
    ca_bundle: graph-ca.pem
defaults:
  working_hours: {{{{mon-fri: "09:00-17:00"}}}}
directory:
  source: {{{{kind: entra, account: m365, group: program-group}}}}
  program: development
  first_within: 30d
  plans: plans
"""


def at(days: int) -> str:
    return (T0 + timedelta(days=days)).isoformat()


def test_a_joiner_and_a_manager_change_on_microsoft_365(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = [mail(w) for w in ("boss", "lea", "max", "ana", "ben")]
    with GraphServer(people) as server:
        monkeypatch.setenv(SECRET_ENV, server.client_secret or "")
        d = server.directory
        d.add_user(mail("boss"), "Bo Boss")
        d.add_user(mail("lea"), "Lea Lead", mail("boss"))
        d.add_user(mail("max"), "Max Lead", mail("boss"))
        d.add_user(mail("ana"), "Ana Alves", mail("lea"), usageLocation="DE")
        d.add_group("program-group", [mail("ana")])
        (tmp_path / "plans").mkdir()
        (tmp_path / "plans" / f"{mail('ana')}.yaml").write_text(PLAN)
        server.write_ca(tmp_path / "graph-ca.pem")
        config = M365.format(tenant=server.tenant, client_id=server.client_id, url=server.url)
        (tmp_path / "cadence.yaml").write_text(config + PROGRAM)

        # a wrong secret: one line, nothing stored
        monkeypatch.setenv(SECRET_ENV, "not-the-secret")
        refused = CliRunner().invoke(
            app, ["directory", "sync", "--now", at(0), "--config", str(tmp_path / "cadence.yaml")]
        )
        assert refused.exit_code == 1
        assert refused.stderr.startswith("error: directory read failed: token request refused: ")
        assert "invalid_client" in refused.stderr and refused.stderr.count("\n") == 1
        monkeypatch.setenv(SECRET_ENV, server.client_secret or "")

        out = cadence(tmp_path, "directory", "sync", "--now", at(0))
        assert f"joins: {mail('ana')} (leader {mail('lea')})" in out and "applied" in out
        cadence(tmp_path, "run", "--once", "--now", at(17))
        [align] = [b for b in bookings(tmp_path) if b.series == "deep_dive"]
        assert align.relationship == f"{mail('ana')}/{mail('lea')}" and align.stage == "align"
        assert T0 + timedelta(days=17) < align.start <= T0 + timedelta(days=30)
        booked = [e for e in server.events_of(mail("ana")) if e.get("transactionId")]
        assert [e["subject"] for e in booked] == ["Development Align: Ana & Lea"]

        # the delta shows Ana's new manager: her Align with Lea is cancelled, both are
        # told, and Max gets the hand-over, all through Graph
        d.set_manager(mail("ana"), mail("max"))
        server.reset_counts()
        out = cadence(tmp_path, "directory", "sync", "--now", at(18))
        assert f"new leader: {mail('ana')}: {mail('lea')} -> {mail('max')}" in out
        assert server.counts["users.delta"] == 1 and "users.list" not in server.counts
        cadence(tmp_path, "run", "--once", "--now", at(18))
        old = next(b for b in bookings(tmp_path) if b.key == align.key)
        assert old.status == "cancelled"
        assert not [e for e in server.events_of(mail("ana")) if e.get("transactionId")]
        subjects = {str(m["Subject"]): m for m in server.sent}
        [ended] = [m for s, m in subjects.items() if "have ended" in s]
        [handover] = [m for s, m in subjects.items() if s.startswith("Development hand-over")]
        assert {a.addr_spec for a in ended["To"].addresses} == {mail("ana"), mail("lea")}
        assert mail("max") in {a.addr_spec for a in handover["To"].addresses}
        body = handover.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "Lead the payments migration" in body
        sent = len(server.sent)
        cadence(tmp_path, "run", "--once", "--now", at(18))
        assert len(server.sent) == sent  # a rerun repeats nothing


def test_leavers_the_guard_export_and_forget_on_microsoft_365(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = [mail(w) for w in ("boss", "lea", "ana", "ben", "cy")]
    with GraphServer(people) as server:
        monkeypatch.setenv(SECRET_ENV, server.client_secret or "")
        d = server.directory
        d.add_user(mail("boss"), "Bo Boss")
        d.add_user(mail("lea"), "Lea Lead", mail("boss"))
        for who in ("ana", "ben", "cy"):
            d.add_user(mail(who), who.title(), mail("lea"))
        d.add_group("program-group", [mail("ana"), mail("ben"), mail("cy")])
        (tmp_path / "plans").mkdir()
        server.write_ca(tmp_path / "graph-ca.pem")
        config = M365.format(tenant=server.tenant, client_id=server.client_id, url=server.url)
        (tmp_path / "cadence.yaml").write_text(config + PROGRAM)
        cadence(tmp_path, "directory", "sync", "--now", at(0))
        cadence(tmp_path, "run", "--once", "--now", at(17))
        aligns = {b.relationship: b for b in bookings(tmp_path) if b.series == "deep_dive"}
        assert set(aligns) == {f"{mail(w)}/{mail('lea')}" for w in ("ana", "ben", "cy")}

        # Ben and Cy leave: two of five is past the guard's 10 %; nothing is cancelled
        d.delete(mail("ben"))
        d.delete(mail("cy"))
        held = CliRunner().invoke(
            app, ["directory", "sync", "--now", at(18), "--config", str(tmp_path / "cadence.yaml")]
        )
        assert held.exit_code == 1 and "held: the directory read returned 3 people" in held.stdout
        out = cadence(tmp_path, "run", "--once", "--now", at(18))
        assert "directory read held" in out
        assert all(b.status == "booked" for b in bookings(tmp_path))

        # confirmed: their Aligns are cancelled on the calendars, and nobody mails them
        sent = len(server.sent)
        out = cadence(tmp_path, "directory", "sync", "--now", at(18), "--confirm")
        assert f"leaves: {mail('ben')}" in out and f"leaves: {mail('cy')}" in out
        cadence(tmp_path, "run", "--once", "--now", at(18))
        status = {b.relationship: b.status for b in bookings(tmp_path) if b.series == "deep_dive"}
        assert status[f"{mail('ben')}/{mail('lea')}"] == "cancelled"
        assert status[f"{mail('cy')}/{mail('lea')}"] == "cancelled"
        assert status[f"{mail('ana')}/{mail('lea')}"] == "booked"
        for who in ("ben", "cy"):
            assert not [e for e in server.events_of(mail(who)) if e.get("transactionId")]
        for message in server.sent[sent:]:
            assert mail("ben") not in str(message["To"]) and mail("cy") not in str(message["To"])

        # export and forget
        data = json.loads(cadence(tmp_path, "export", mail("ana")))
        assert data["store"]["bookings"] and data["store"]["directory_people"]
        cadence(tmp_path, "forget", mail("ana"), "--yes", "--now", at(19))
        data = json.loads(cadence(tmp_path, "export", mail("ana")))
        assert data["forgotten_at"] and not any(data["store"].values())
        assert mail("ana") not in cadence(tmp_path, "directory", "diff", "--now", at(20))
