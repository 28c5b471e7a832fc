"""Authentication-Results read as real servers write them, and the rules that decide
whether a reply's sender is authenticated and within the limits (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.core.model import ReplyIntake
from agent.formats import authres
from agent.rules import intake, replies

GMAIL = (
    "mx.google.com;\r\n       dkim=pass header.i=@acme.example header.s=s1 header.b=Xy+z;\r\n"
    "       spf=pass (google.com: domain of emma@acme.example designates 192.0.2.7 as "
    "permitted sender) smtp.mailfrom=emma@acme.example;\r\n"
    "       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=acme.example"
)
# Microsoft 365 writes no authserv-id and an "action=none" without a ptype
EXCHANGE_ONLINE = (
    "spf=pass (sender IP is 192.0.2.7) smtp.mailfrom=acme.example; dkim=pass (signature "
    "was verified) header.d=acme.example;dmarc=pass action=none header.from=acme.example;"
    "compauth=pass reason=100"
)
FORGED = (
    "mx.acme.example; spf=fail smtp.mailfrom=bounce@evil.example; "
    "dmarc=fail (p=reject) header.from=acme.example"
)


def test_gmail_field() -> None:
    got = authres.parse(GMAIL)
    assert got.authserv_id == "mx.google.com"
    assert [(r.method, r.result) for r in got.results] == [
        ("dkim", "pass"),
        ("spf", "pass"),
        ("dmarc", "pass"),
    ]
    assert got.results[0].prop("header.i") == "@acme.example"
    assert got.results[1].prop("smtp.mailfrom") == "emma@acme.example"  # comment dropped


def test_exchange_online_field_without_authserv_id() -> None:
    got = authres.parse(EXCHANGE_ONLINE)
    assert got.authserv_id is None
    assert [(r.method, r.result) for r in got.results][:3] == [
        ("spf", "pass"),
        ("dkim", "pass"),
        ("dmarc", "pass"),
    ]
    assert got.results[2].prop("header.from") == "acme.example"


def test_none_versions_quotes_and_comments_holding_separators() -> None:
    assert authres.parse("mx.example.org 1; none") == authres.AuthResults("mx.example.org")
    got = authres.parse(
        'mx.example.org; auth/1 = pass (a comment; with = signs (nested)) smtp.auth="a b;c"'
    )
    assert got.results == (authres.Result("auth", "pass", (("smtp.auth", "a b;c"),)),)


@given(st.text())
def test_any_text_parses_without_error(text: str) -> None:
    got = authres.parse(text)
    assert all(r.method and r.result for r in got.results)


_word = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
_value = st.from_regex(r"[A-Za-z0-9@._+-]{1,20}", fullmatch=True)
_comment = st.sampled_from(["", " (ok)", " (a; b = c)", " (nested (deep; x=y))"])


@given(
    st.one_of(st.none(), st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8}){0,2}", fullmatch=True)),
    st.lists(
        st.tuples(_word, _word, st.lists(st.tuples(_word, _word, _value), max_size=3), _comment),
        max_size=4,
    ),
)
def test_written_results_read_back(
    server: str | None, results: list[tuple[str, str, list[tuple[str, str, str]], str]]
) -> None:
    parts = [server] if server else []
    for method, result, props, comment in results:
        text = f"{method}={result}{comment}"
        text += "".join(f" {ptype}.{prop}={value}" for ptype, prop, value in props)
        parts.append(text)
    if not results and server:
        parts.append("none")
    got = authres.parse(";\r\n\t".join(parts))
    assert got.authserv_id == server
    assert got.results == tuple(
        authres.Result(m, r, tuple((f"{t}.{p}", v) for t, p, v in props))
        for m, r, props, _ in results
    )


def test_dmarc_pass_authenticates_and_dmarc_fail_refuses() -> None:
    assert intake.authenticity(["emma@acme.example"], [GMAIL]) is None
    assert intake.authenticity(["emma@acme.example"], [EXCHANGE_ONLINE]) is None
    reason = intake.authenticity(["emma@acme.example"], [FORGED, GMAIL])
    assert reason and "failed DMARC" in reason  # the topmost field is the receiver's


def test_a_pass_for_another_domain_does_not_authenticate() -> None:
    other = "mx.acme.example; spf=pass smtp.mailfrom=evil.example; dkim=pass header.d=evil.example"
    reason = intake.authenticity(["emma@acme.example"], [other])
    assert reason == (
        "emma@acme.example is not authenticated for acme.example "
        "(spf=pass for evil.example, dkim=pass for evil.example)"
    )
    dmarc_other = "mx; dmarc=pass header.from=evil.example"
    assert intake.authenticity(["emma@acme.example"], [dmarc_other])


def test_aligned_spf_or_dkim_stand_in_for_a_missing_dmarc_verdict() -> None:
    spf = "mx; spf=pass smtp.mailfrom=bounces@mail.acme.example; dmarc=none"
    dkim = "mx; dkim=pass header.i=@acme.example; spf=softfail smtp.mailfrom=x@evil.example"
    assert intake.authenticity(["emma@acme.example"], [spf]) is None
    assert intake.authenticity(["emma@acme.example"], [dkim]) is None
    assert intake.authenticity(["emma@acme.example"], ["mx; none"])


def test_from_must_hold_one_address_and_a_field_must_exist() -> None:
    two = intake.authenticity(["emma@acme.example", "ben@acme.example"], [GMAIL])
    assert two == "From holds 2 addresses; one sender is needed"
    assert "no Authentication-Results" in (intake.authenticity(["emma@acme.example"], []) or "")


def test_authserv_ids_pick_the_known_servers_field() -> None:
    forged_claim = "mx.google.com; dmarc=pass header.from=acme.example"
    own = "mx.acme.example; dmarc=fail header.from=acme.example"
    assert intake.authenticity(["emma@acme.example"], [own, forged_claim], ["mx.acme.example"])
    missing = intake.authenticity(["emma@acme.example"], [forged_claim], ["mx.acme.example"])
    assert missing and "no Authentication-Results from mx.acme.example" in missing


@given(st.sampled_from(["acme.example", "mail.acme.example", "acme.example."]))
def test_alignment_is_relaxed(domain: str) -> None:
    assert intake.aligned(domain, "acme.example")
    assert not intake.aligned("evilacme.example", "acme.example")
    assert not intake.aligned("", "acme.example")


def test_trust_defaults_by_provider() -> None:
    rules = ReplyIntake()
    assert intake.trust_for(rules, "local") == "from"
    assert intake.trust_for(rules, "google") == "authenticated"
    assert intake.trust_for(ReplyIntake(trust="from"), "microsoft") == "from"


@given(st.integers(0, 10**9), st.integers(1024, 10**8))
def test_size_limit(size: int, limit: int) -> None:
    refused = intake.size_refusal(size, ReplyIntake(max_size=limit))
    assert (refused is None) == (size <= limit)


def test_action_and_update_limits() -> None:
    rules = ReplyIntake(max_actions=50, max_updates_per_day=3)
    assert intake.actions_refusal(50, rules) is None
    assert intake.actions_refusal(51, rules)
    assert intake.update_refusal(2, rules) is None
    assert intake.update_refusal(3, rules)


def test_parse_reads_from_addresses_and_fields_topmost_first() -> None:
    raw = (
        f"Authentication-Results: {FORGED}\r\nAuthentication-Results: {GMAIL}\r\n"
        "From: Emma <emma@acme.example>\r\nMessage-ID: <a@b>\r\n\r\nhi\r\n"
    ).encode()
    got = replies.parse(raw)
    assert got.from_addresses == ("emma@acme.example",)
    assert [authres.parse(v).authserv_id for v in got.authentication] == [
        "mx.acme.example",
        "mx.google.com",
    ]
