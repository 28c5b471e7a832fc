"""Address headers parse back to exactly the configured addresses, whatever the names hold.

Every message builder is checked on the bytes it produces, read back with the standard
library's parser: the shared builder (the SMTP policy, which EWS sends, and Graph's
default policy), SMTP with and without an account ``from`` (then Reply-To is set too),
Gmail from the sender's own mailbox and from a shared one, Graph from the sender and from
a shared sender, and the local outbox's ``.eml`` files. Each provider's wire is checked
with a hostile name in its own tests (``-k hostile``).
"""

from __future__ import annotations

import email
import tempfile
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.connectors.google.mail import build_message as gmail_message
from agent.connectors.local import OutboxMailer
from agent.connectors.microsoft.mail import build_mime
from agent.connectors.smtp.send import build_message as smtp_message
from agent.core.model import OutgoingMail
from agent.formats import mime, plain

#: the names of the report, and others of their kind
HOSTILE = [
    "Gonçalves (PM), Ana",
    "Ana\r\nBcc: someone@elsewhere.example",
    "Eve\nFrom: boss@acme.example",
    'Ana "The Boss" <boss@acme.example>',
    "naïve @ home",
    "Ana: a@b.example, c@d.example;",
    "=?utf-8?q?x=40evil.example?= <x@evil.example>",
    "\u202eAna\u202c",
    "Ana\\",
    "é" * 150 + ", x@evil.example",
    "Zoë <img src=x onerror=alert(1)>",
]
HEADERS = ("From", "To", "Cc", "Bcc", "Reply-To", "Sender", "Resent-From", "Resent-To")

local = st.from_regex(r"[a-z0-9]([a-z0-9._+-]{0,18}[a-z0-9])?", fullmatch=True).filter(
    lambda s: ".." not in s
)
domain = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,2}\.[a-z]{2,6}", fullmatch=True)
addresses = st.builds(lambda a, b: f"{a}@{b}", local, domain)
#: any text, the reported names, and names built from the characters that matter
names = st.one_of(
    st.text(max_size=80),
    st.sampled_from(HOSTILE),
    st.lists(
        st.sampled_from(
            [
                "é",
                "ç",
                ",",
                "(",
                ")",
                ":",
                ";",
                "@",
                '"',
                "\\",
                "<",
                ">",
                "\r\n",
                "\n",
                " ",
                "a",
                "Bcc: x@evil.example",
                "=?utf-8?q?",
                "?=",
                "\u202e",
                "\x00",
                "\t",
            ]
        ),
        max_size=30,
    ).map("".join),
)


def mail(sender: str, name: str, to: tuple[str, ...]) -> OutgoingMail:
    return OutgoingMail(
        key="k1:agenda",
        sender=sender,
        sender_name=name,
        to=to,
        subject=f"Agenda: Mentoring with {name}",
        text="text",
        html="<p>html</p>",
        message_id="<k1.agenda@cadence>",
    )


def parsed(raw: bytes) -> EmailMessage:
    back = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(back, EmailMessage)
    return back


def check(raw: bytes, expected: dict[str, list[str]]) -> EmailMessage:
    """Assert every address header of ``raw`` holds exactly the ``expected`` addresses."""
    back = parsed(raw)
    assert not back.defects
    for header in HEADERS:
        values = back.get_all(header) or []
        assert len(values) <= 1, f"{header} appears {len(values)} times"
        found = [a.addr_spec for v in values for a in v.addresses]
        assert found == expected.get(header, []), header
    return back


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, sender=addresses, to=st.lists(addresses, min_size=1, max_size=3))
def test_every_builder_keeps_exactly_the_configured_addresses(
    name: str, sender: str, to: list[str]
) -> None:
    out = mail(sender, name, tuple(to))
    own = {"From": [sender], "To": to}
    check(mime.build(out).as_bytes(), own)  # also what EWS sends
    check(mime.build(out, policy=policy.default).as_bytes(), own)
    check(smtp_message(out).as_bytes(), own)
    check(
        smtp_message(out, envelope_from="cadence@relay.example").as_bytes(),
        {"From": ["cadence@relay.example"], "To": to, "Reply-To": [sender]},
    )
    check(gmail_message(out, sender).as_bytes(), own)
    check(
        gmail_message(out, "shared@acme.example").as_bytes(),
        {"From": ["shared@acme.example"], "To": to, "Reply-To": [sender]},
    )
    check(build_mime(out, sender).as_bytes(), own)
    check(
        build_mime(out, "shared@acme.example").as_bytes(),
        {"From": ["shared@acme.example"], "To": to},
    )
    with tempfile.TemporaryDirectory() as folder:
        sent = OutboxMailer(Path(folder)).send(out)
        back = check(Path(sent.where).read_bytes(), own)
    # the name shown is the plain name, and the subject one line without controls
    [shown] = back["From"].addresses
    assert "".join(shown.display_name.split()) == "".join(plain.display_name(name).split())
    assert not plain.BIDI.search(str(back["Subject"]))
    assert not any(c in str(back["Subject"]) for c in "\r\n\x00")


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_name_stays_the_display_name(name: str) -> None:
    back = check(
        mime.build(mail("ana@acme.example", name, ("ben@acme.example",))).as_bytes(),
        {"From": ["ana@acme.example"], "To": ["ben@acme.example"]},
    )
    [sender] = back["From"].addresses
    assert "<" not in sender.display_name and "\n" not in sender.display_name
    assert len(sender.display_name) <= plain.NAME_LIMIT + 10  # folding may add spaces


def test_the_reported_names_parse_as_one_address_each() -> None:
    raw = mime.build(mail("ana@acme.example", "Gonçalves (PM), Ana", ("ben@acme.example",)))
    [sender] = parsed(raw.as_bytes())["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Gonçalves (PM), Ana", "ana@acme.example")
    raw = mime.build(mail("ana@acme.example", "Ana\r\nBcc: someone@elsewhere.example", ("b@c.d",)))
    back = parsed(raw.as_bytes())
    [sender] = back["From"].addresses
    assert sender.addr_spec == "ana@acme.example" and back["Bcc"] is None
    assert sender.display_name == "Ana Bcc: someone@elsewhere.example"


@pytest.mark.parametrize("bad", ["a@b.example, c@d.example", "Eve <e@x.example>", "nobody", "@x"])
def test_an_address_that_is_not_one_mailbox_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a mail address"):
        mime.build(mail(bad, "", ("ben@acme.example",)))
    with pytest.raises(ValueError, match="not a mail address"):
        mime.build(mail("ana@acme.example", "", (bad,)))


@pytest.mark.parametrize("header", ["Cc", "bcc", "Reply-To", "Sender", "X-Bad: Bcc", "X\r\nBcc"])
def test_extra_headers_cannot_name_mailboxes(header: str) -> None:
    extra = OutgoingMail(
        **{
            **mail("a@b.example", "A", ("c@d.example",)).__dict__,
            "headers": {header: "e@f.example"},
        }
    )
    with pytest.raises(ValueError, match="may not be set"):
        mime.build(extra)
