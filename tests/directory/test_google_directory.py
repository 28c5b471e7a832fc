"""The Google Workspace source against the fake Admin SDK (requests validated against the
``admin`` ``directory_v1`` discovery document): paging, managers, group members, a
full read each time, and refused sign-ins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.connectors.directory import DirectoryContext, read
from agent.connectors.directory.google_workspace import SCOPES
from agent.core.errors import PermanentError
from agent.core.retry import RetryPolicy
from agent.rules import directory as rules
from agent.settings.schema import GoogleAccount, GoogleDirectorySource
from tests.environ import clean_environ
from tests.google.harness import SERVICE_ACCOUNT, rsa_key, write_secret
from tests.google.server import GoogleServer

ADMIN = "admin@acme.example"
FILLERS = 1100  # three pages of users at 500


def mail(who: str) -> str:
    return f"{who}@acme.example"


@pytest.fixture
def server() -> Iterator[GoogleServer]:
    with clean_environ(), GoogleServer() as s:
        d = s.directory
        d.admins.add(ADMIN)
        d.add_user(ADMIN, "Ada Admin")
        d.add_user(mail("boss"), "Bo Boss", country="DE", language="de")
        d.add_user(mail("lea"), "Lea Lead", mail("boss"), country="de")
        d.add_user(mail("max"), "Max Lead", mail("boss"))
        d.add_user(mail("ana"), "Ana Alves", mail("lea"), country="PT", language="pt-BR")
        d.add_user(mail("ben"), "Ben Berg", mail("lea"), languages=[{"customLanguage": "Klingon"}])
        d.add_user(mail("gone"), "Gus Gone", mail("lea"), suspended=True)
        for n in range(FILLERS):
            d.add_user(mail(f"u{n:04d}"), f"User {n}", mail("max"))
        d.add_group("eng@acme.example", [mail("ana"), mail("ben"), mail("gone")])
        d.add_group(
            "program@acme.example",
            [mail("lea"), "eng@acme.example", *(mail(f"u{n:04d}") for n in range(250))],
        )
        yield s


def context(
    server: GoogleServer, tmp_path: Path, delegated: tuple[str, ...] = SCOPES
) -> DirectoryContext:
    sa = server.state.add_service_account(SERVICE_ACCOUNT, set(delegated), rsa_key())
    write_secret(tmp_path / "key.json", sa.key_file(server.token_uri))
    account = GoogleAccount(provider="google", credentials="key.json")
    return DirectoryContext(base=tmp_path, accounts={"gws": account}, retry=RetryPolicy.none())


def source(server: GoogleServer, subject: str = ADMIN) -> GoogleDirectorySource:
    return GoogleDirectorySource(
        kind="google",
        account="gws",
        subject=subject,
        group="program@acme.example",
        endpoint=server.url,
    )


def test_a_full_read_pages_through_users_and_members(server: GoogleServer, tmp_path: Path) -> None:
    got = read(source(server), context(server, tmp_path))
    assert got.full and got.cursor is None and got.removed == []
    assert server.state.counts["directory.users.list"] == 3
    assert server.state.counts["directory.members.list"] == 2  # 200 a page at most
    assert got.requests == 5
    people = rules.resolve(got.entries)
    assert len(people) == FILLERS + 6  # the suspended user is not read
    assert mail("gone") not in people
    ana = people[mail("ana")]
    assert (ana.name, ana.manager, ana.country, ana.language) == (
        "Ana Alves",
        mail("lea"),
        "PT",
        "pt-BR",
    )
    assert people[mail("lea")].country == "DE" and people[mail("ben")].language is None
    members = {e for e, p in people.items() if p.member}
    assert {mail("lea"), mail("ana"), mail("ben")} <= members
    assert len(members) == 253 and mail("u0250") not in members
    reporting = rules.reporting(people)
    assert reporting[mail("ana")] == mail("lea") and reporting[mail("u0001")] == mail("max")
    # the requests asked only for what is read, with the read-only scopes
    users = next(line for line in server.state.log if "/admin/directory/v1/users?" in line)
    assert "customer=my_customer" in users and "projection=full" in users
    assert "maxResults=500" in users and "fields=" in users


def test_every_read_is_full_and_the_diff_finds_the_changes(
    server: GoogleServer, tmp_path: Path
) -> None:
    ctx = context(server, tmp_path)
    before = rules.resolve(read(source(server), ctx).entries)
    d = server.directory
    d.set_manager(mail("ana"), mail("max"))
    d.delete(mail("ben"))
    d.add_user(mail("zoe"), "Zoe New", mail("lea"))
    d.add_group("eng@acme.example", [mail("ana"), mail("zoe")])
    got = read(source(server), ctx, "ignored: the API has no delta")
    assert got.full
    after = rules.resolve(got.entries)
    diff = rules.diff(before, after)
    assert [e.email for e in diff.joined] == [mail("zoe")]
    assert [e.email for e in diff.left] == [mail("ben")]
    assert [(c.line, c.successor) for c in diff.manager_changes] == [
        ((mail("ana"), mail("lea")), mail("max"))
    ]
    assert after[mail("zoe")].member


def test_a_delegation_without_the_scopes_is_one_clean_line(
    server: GoogleServer, tmp_path: Path
) -> None:
    ctx = context(server, tmp_path, delegated=(SCOPES[0],))
    with pytest.raises(PermanentError) as info:
        read(source(server), ctx)
    text = str(info.value)
    assert "unauthorized_client" in text and "domain-wide delegation" in text
    assert "admin.directory.group.member.readonly" in text and "\n" not in text
    assert "PRIVATE KEY" not in text


def test_a_subject_who_is_no_administrator_is_refused(server: GoogleServer, tmp_path: Path) -> None:
    with pytest.raises(PermanentError) as info:
        read(source(server, subject=mail("ana")), context(server, tmp_path))
    text = str(info.value)
    assert "403 forbidden" in text and "must be an administrator" in text
    assert "\n" not in text


def test_an_unknown_group_is_an_error_not_an_empty_program(
    server: GoogleServer, tmp_path: Path
) -> None:
    src = source(server).model_copy(update={"group": "typo@acme.example"})
    with pytest.raises(PermanentError, match="404 notFound"):
        read(src, context(server, tmp_path))
