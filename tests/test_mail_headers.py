"""Address headers parse back to exactly the configured addresses, whatever the names hold.

Every builder is checked on the wire bytes it produces: the shared one, SMTP (with an
account ``from``, so Reply-To is set too), Gmail sending from a shared mailbox, Graph.
"""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.connectors.google.mail import build_message as gmail_message
from agent.connectors.microsoft.mail import build_mime
from agent.connectors.smtp.send import build_message as smtp_message
from agent.core.model import OutgoingMail
from agent.formats import mime

HOSTILE = [
    "Gonçalves (PM), Ana",
    "Eve\r\nBcc: someone@elsewhere.example",
    "Eve\nFrom: boss@acme.example",
    'Ana "The Boss" <boss@acme.example>',
    "naïve @ home",
    "Ana: a@b.example, c@d.example;",
    "=?utf-8?q?x=40evil.example?= <x@evil.example>",
    "\u202eAna\u202c",
    "Ana\\",
    "é" * 120 + ", x@evil.example",
]

local = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}[a-z0-9]", fullmatch=True).filter(
    lambda s: ".." not in s
)
domain = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,2}\.[a-z]{2,6}", fullmatch=True)
addresses = st.builds(lambda a, b: f"{a}@{b}", local, domain)
names = st.one_of(
    st.text(max_size=80),
    st.sampled_from(HOSTILE),
    st.lists(
        st.sampled_from(["é", ",", "(", ")", ":", ";", "@", '"', "\\", "<", ">", "\r\n", " ", "a"])
    ).map("".join),
)


def mail(sender: str, name: str, to: tuple[str, ...]) -> OutgoingMail:
    return OutgoingMail(
        key="k1:agenda",
        sender=sender,
        sender_name=name,
        to=to,
        subject="Agenda",
        text="text",
        html="<p>html</p>",
        message_id="<k1.agenda@cadence>",
    )


def parsed(msg: EmailMessage) -> EmailMessage:
    back = email.message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert isinstance(back, EmailMessage)
    return back


def specs(msg: EmailMessage, header: str) -> list[str]:
    values = msg.get_all(header) or []
    assert len(values) <= 1, f"{header} appears {len(values)} times"
    return [a.addr_spec for v in values for a in v.addresses]


def check(msg: EmailMessage, expected: dict[str, list[str]]) -> None:
    back = parsed(msg)
    for header in ("From", "To", "Cc", "Bcc", "Reply-To", "Sender"):
        assert specs(back, header) == expected.get(header, []), header


@settings(max_examples=200, deadline=None)
@given(name=names, sender=addresses, to=st.lists(addresses, min_size=1, max_size=3))
def test_every_builder_keeps_exactly_the_configured_addresses(
    name: str, sender: str, to: list[str]
) -> None:
    out = mail(sender, name, tuple(to))
    check(mime.build(out), {"From": [sender], "To": to})
    check(mime.build(out, policy=policy.default), {"From": [sender], "To": to})
    check(
        smtp_message(out, envelope_from="cadence@relay.example"),
        {"From": ["cadence@relay.example"], "To": to, "Reply-To": [sender]},
    )
    check(smtp_message(out), {"From": [sender], "To": to})
    check(
        gmail_message(out, "shared@acme.example"),
        {"From": ["shared@acme.example"], "To": to, "Reply-To": [sender]},
    )
    check(gmail_message(out, sender), {"From": [sender], "To": to})
    check(build_mime(out, sender), {"From": [sender], "To": to})


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_name_stays_the_display_name(name: str) -> None:
    back = parsed(mime.build(mail("ana@acme.example", name, ("ben@acme.example",))))
    [sender] = back["From"].addresses
    assert sender.addr_spec == "ana@acme.example"
    assert "Bcc" not in back and "Cc" not in back
    if "=?" not in name:  # a name that is an encoded word is decoded by readers
        # a long encoded name is folded into several encoded words: spaces may join them
        assert sender.display_name.split() == mime.display_name(name).split() or (
            "".join(sender.display_name.split()) == "".join(mime.display_name(name).split())
        )


def test_the_reported_name_parses_as_one_address() -> None:
    raw = mime.build(mail("ana@acme.example", "Gonçalves (PM), Ana", ("ben@acme.example",)))
    [sender] = parsed(raw)["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Gonçalves (PM), Ana", "ana@acme.example")


@pytest.mark.parametrize("bad", ["a@b.example, c@d.example", "Eve <e@x.example>", "nobody", "@x"])
def test_an_address_that_is_not_one_mailbox_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a mail address"):
        mime.build(mail(bad, "", ("ben@acme.example",)))
    with pytest.raises(ValueError, match="not a mail address"):
        mime.build(mail("ana@acme.example", "", (bad,)))
