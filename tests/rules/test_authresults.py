"""Authentication-Results (RFC 8601): which replies count as from their From address."""

from __future__ import annotations

import pytest

from agent.rules.authresults import aligned, parse, verdict

GMAIL = (
    "mx.google.com;\r\n       dkim=pass header.i=@acme.example header.s=s1 header.b=AbC;\r\n"
    "       spf=pass (google.com: domain of ana@acme.example designates 192.0.2.1 as "
    "permitted sender) smtp.mailfrom=ana@acme.example;\r\n"
    "       dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=acme.example"
)
EXCHANGE = (
    "spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=mail.acme.example; dkim=pass "
    "(signature was verified) header.d=acme.example;dmarc=pass action=none "
    "header.from=acme.example;compauth=pass reason=100"
)


def test_gmail_and_exchange_headers_parse() -> None:
    assert [(r.method, r.result) for r in parse(GMAIL)] == [
        ("dkim", "pass"),
        ("spf", "pass"),
        ("dmarc", "pass"),
    ]
    assert parse(GMAIL)[2].properties["header.from"] == "acme.example"
    assert [r.method for r in parse(EXCHANGE)] == ["spf", "dkim", "dmarc", "compauth"]
    assert parse("mx.example.org 1; none") == []
    assert parse('mx; dkim=pass (a comment; with "quotes") header.d="acme.example"')[
        0
    ].properties == {"header.d": "acme.example"}


@pytest.mark.parametrize("header", [GMAIL, EXCHANGE])
def test_an_authenticated_from_counts(header: str) -> None:
    assert verdict([header], "ana@acme.example") is None


@pytest.mark.parametrize(
    "header",
    [
        "mx.google.com; spf=pass smtp.mailfrom=mail.acme.example",  # aligned SPF
        "mx.google.com; dkim=pass header.d=acme.example; dmarc=none",  # aligned DKIM
        "mx.google.com; dkim=pass header.i=@news.acme.example",
    ],
)
def test_an_aligned_spf_or_dkim_pass_counts(header: str) -> None:
    assert verdict([header], "ana@acme.example") is None


@pytest.mark.parametrize(
    "headers",
    [
        [],  # nothing says who sent it
        ["mx.google.com; spf=fail smtp.mailfrom=evil.example; dmarc=fail header.from=acme.example"],
        ["mx.google.com; dkim=pass header.d=evil.example; spf=pass smtp.mailfrom=evil.example"],
        ["mx.google.com; dmarc=pass header.from=evil.example"],  # DMARC for another domain
        ["mx.google.com; dkim=pass header.d=acme.example.evil.example"],
        ["mx.google.com; spf=softfail smtp.mailfrom=acme.example"],
        # the sender's own header below the receiving server's: only the topmost counts
        ["mx.google.com; spf=fail smtp.mailfrom=evil.example", GMAIL],
        ["mx.google.com; dkim=pass (header.d=acme.example) header.d=evil.example"],
    ],
)
def test_a_forged_from_does_not_count(headers: list[str]) -> None:
    why = verdict(headers, "ana@acme.example")
    assert why is not None and ("acme.example" in why or "no Authentication-Results" in why)


def test_alignment_is_relaxed_but_never_between_strangers() -> None:
    assert aligned("acme.example", "ACME.example.")
    assert aligned("acme.example", "mail.acme.example")
    assert aligned("mail.acme.example", "acme.example")
    assert not aligned("acme.example", "notacme.example")
    assert not aligned("acme.example", "")
