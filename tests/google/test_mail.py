"""Mailer: users.messages.send from the sender's mailbox, threading, safety."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from agent.core.errors import PermanentError, TransientError
from agent.core.model import Invitation, OutgoingMail
from tests.google.harness import Workspace, workspace

AGENDA = OutgoingMail(
    key="k1:agenda",
    sender="ana@acme.example",
    sender_name="Ana Lima",
    to=("ana@acme.example", "ben@acme.example"),
    subject="Agenda: Development check-in",
    text="Goals\n- one",
    html="<p>Goals</p><ul><li>one</li></ul>",
    message_id="<k1.agenda@cadence>",
)
RECAP = OutgoingMail(
    key="k1:recap",
    sender="ana@acme.example",
    sender_name="Ana Lima",
    to=("ana@acme.example", "ben@acme.example"),
    subject="Re: Agenda: Development check-in",
    text="Recap",
    html="<p>Recap</p>",
    message_id="<k1.recap@cadence>",
    in_reply_to="<k1.agenda@cadence>",
    references=("<k1.agenda@cadence>",),
)
REPLIES = (
    "programs:\n  p:\n    series:\n      check_in: {every: 30d, duration: 15m, title: x}\n"
    "    recap: {collect_replies: true}\n"
)


def test_agenda_is_sent_from_the_senders_mailbox_as_multipart_alternative(ws: Workspace) -> None:
    _, mailer = ws.connect()
    sent = mailer.send(AGENDA)
    mailer.close()
    (stored,) = ws.server.state.sent
    msg = stored.message
    assert stored.user == "ana@acme.example"
    assert (
        sent.message_id == "<k1.agenda@cadence>"
        and sent.where == f"gmail:ana@acme.example/{stored.id}"
    )
    assert msg["From"] == "Ana Lima <ana@acme.example>" and "Reply-To" not in msg
    assert msg["To"] == "ana@acme.example, ben@acme.example"
    assert msg["Message-ID"] == "<k1.agenda@cadence>"
    assert msg.get_content_type() == "multipart/alternative"
    assert msg.get_body(("plain",)).get_content().splitlines() == ["Goals", "- one"]
    assert "<li>one</li>" in msg.get_body(("html",)).get_content()
    assert ws.server.state.counts["gmail.users.messages.send"] == 1
    assert msg["Date"]


def test_caller_headers_win_over_defaults(ws: Workspace) -> None:
    from dataclasses import replace

    _, mailer = ws.connect()
    mailer.send(replace(AGENDA, headers={"Date": "Mon, 23 Nov 2026 14:00:00 +0000"}))
    mailer.close()
    msg = ws.server.state.sent[0].message
    assert msg.get_all("Date") == ["Mon, 23 Nov 2026 14:00:00 +0000"]


def test_recap_joins_the_agendas_gmail_thread(ws: Workspace) -> None:
    _, mailer = ws.connect()
    mailer.send(AGENDA)
    mailer.send(RECAP)
    mailer.close()
    agenda, recap = ws.server.state.sent
    assert recap.thread_id == agenda.thread_id
    assert recap.message["In-Reply-To"] == "<k1.agenda@cadence>"
    assert recap.message["References"] == "<k1.agenda@cadence>"


def test_recap_in_a_later_run_without_read_scope_still_threads_by_headers(ws: Workspace) -> None:
    _, mailer = ws.connect()
    mailer.send(AGENDA)
    mailer.close()
    _, later = ws.connect()  # a new process knows no Gmail thread ids
    later.send(RECAP)
    later.close()
    agenda, recap = ws.server.state.sent
    assert recap.message["In-Reply-To"] == "<k1.agenda@cadence>"
    assert recap.thread_id != agenda.thread_id  # Gmail would need threadId (or read scope)


def test_with_read_scope_a_later_run_finds_the_thread_and_never_sends_twice(tmp_path: Path) -> None:
    with workspace(tmp_path, rest=REPLIES) as ws:
        _, mailer = ws.connect()
        mailer.send(AGENDA)
        mailer.close()
        _, later = ws.connect()
        again = later.send(AGENDA)  # a retry after a crash
        recap = later.send(RECAP)
        later.close()
        agenda_mail, recap_mail = ws.server.state.sent
    assert again.already and recap_mail.thread_id == agenda_mail.thread_id
    assert not recap.already


@pytest.mark.parametrize("fault", ["drop-after", "timeout", "drop"])
def test_a_send_whose_connection_closes_unanswered_is_sent_at_most_once(
    tmp_path: Path, fault: str
) -> None:
    """httplib2 would send the request again on a fresh connection; Gmail may already
    have sent the mail, so the error goes to the engine (maybe done) instead."""
    with workspace(tmp_path, account_extra="    timeout: 0.5\n") as ws:
        _, mailer = ws.connect()
        ws.server.state.chaos(1.0, seed=0, kinds=(fault,))
        with pytest.raises(TransientError) as caught:
            mailer.send(AGENDA)
        mailer.close()
        state = ws.server.state
    assert caught.value.maybe_done
    assert state.counts["gmail.users.messages.send"] == 1
    assert len(state.sent) == (0 if fault == "drop" else 1)


def test_configured_sender_sends_with_reply_to_the_person(tmp_path: Path) -> None:
    with workspace(tmp_path, account_extra="    sender: chloe@acme.example\n") as ws:
        _, mailer = ws.connect()
        mailer.send(AGENDA)
        mailer.close()
        (stored,) = ws.server.state.sent
    assert stored.user == "chloe@acme.example"
    assert stored.message["From"] == "Ana Lima <chloe@acme.example>"
    assert stored.message["Reply-To"] == "ana@acme.example"


def test_invitation_travels_as_text_calendar(ws: Workspace) -> None:
    from dataclasses import replace

    ics = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"
    _, mailer = ws.connect()
    mailer.send(replace(AGENDA, invitation=Invitation("REQUEST", ics)))
    mailer.close()
    msg = ws.server.state.sent[0].message
    parts = {p.get_content_type(): p for p in msg.iter_parts()}
    assert set(parts) == {"text/plain", "text/html", "text/calendar"}
    assert parts["text/calendar"].get_param("method") == "REQUEST"
    assert "METHOD:REQUEST" in parts["text/calendar"].get_content()


def test_header_injection_cannot_add_headers(ws: Workspace) -> None:
    from dataclasses import replace

    _, mailer = ws.connect()
    mailer.send(replace(AGENDA, subject="Hi\r\nBcc: eve@evil.example"))
    mailer.close()
    msg = ws.server.state.sent[0].message
    assert msg["Bcc"] is None and "\n" not in msg["Subject"]


def test_an_unusable_address_is_refused_before_sending(ws: Workspace) -> None:
    from dataclasses import replace

    _, mailer = ws.connect()
    with pytest.raises(PermanentError, match="not a mail address"):
        mailer.send(replace(AGENDA, to=("ben at acme",)))
    mailer.close()
    assert ws.server.state.sent == []


def test_a_send_refused_with_a_retry_after_is_sent_after_the_wait(tmp_path: Path) -> None:
    from agent.core.retry import RetryPolicy

    with workspace(tmp_path) as ws:
        slept: list[float] = []
        _, mailer = ws.connect(RetryPolicy(attempts=3, sleep=slept.append, rand=lambda: 0.0))
        ws.server.state.fail("gmail.users.messages.send", 503, "backendError", retry_after="3")
        sent = mailer.send(AGENDA)
        mailer.close()
        state = ws.server.state
    assert slept == [3.0] and not sent.already
    assert state.counts["gmail.users.messages.send"] == 2 and len(state.sent) == 1


def test_a_503_without_a_wait_is_ambiguous_and_not_sent_again(tmp_path: Path) -> None:
    from agent.core.retry import RetryPolicy

    with workspace(tmp_path) as ws:
        _, mailer = ws.connect(RetryPolicy(attempts=3, sleep=lambda s: None))
        ws.server.state.fail("gmail.users.messages.send", 503, "backendError")
        with pytest.raises(TransientError) as caught:
            mailer.send(AGENDA)
        mailer.close()
    assert caught.value.maybe_done and ws.server.state.counts["gmail.users.messages.send"] == 1


@pytest.mark.parametrize("granted", [True, False])
def test_an_ambiguous_send_is_confirmed_with_the_metadata_scope_where_granted(
    tmp_path: Path, granted: bool
) -> None:
    from agent.connectors.google import signin

    delegated = [*signin.scopes_for(False), *([signin.SCOPE_METADATA] if granted else [])]
    with workspace(tmp_path, delegated=delegated) as ws:
        _, mailer = ws.connect()
        for n in range(3):  # other mail sent since, newer than the agenda
            other = OutgoingMail(**{**AGENDA.__dict__, "key": f"o{n}", "message_id": f"<o{n}@x>"})
            if n == 1:
                mailer.send(AGENDA)
            mailer.send(other)
        went = mailer.was_sent(AGENDA)
        never = mailer.was_sent(RECAP)
        mailer.close()
        counts = ws.server.state.counts
    if granted:
        assert went is True and never is False
        assert counts["gmail.users.messages.list"] == 2  # SENT listed, never searched
    else:
        assert went is None and never is None  # the delegation lacks the scope: unknown


def test_a_hostile_sender_name_reaches_only_the_configured_addresses(tmp_path: Path) -> None:
    name = "Gonçalves (PM), Ana\r\nBcc: eve@elsewhere.example"
    with workspace(tmp_path, account_extra="    sender: chloe@acme.example\n") as ws:
        _, mailer = ws.connect()
        mailer.send(replace(AGENDA, sender_name=name))
        mailer.close()
        (stored,) = ws.server.state.sent
    msg = stored.message
    assert [a.addr_spec for a in msg["From"].addresses] == ["chloe@acme.example"]
    assert [a.addr_spec for a in msg["Reply-To"].addresses] == ["ana@acme.example"]
    assert [a.addr_spec for a in msg["To"].addresses] == ["ana@acme.example", "ben@acme.example"]
    assert msg["Bcc"] is None and msg["Cc"] is None
