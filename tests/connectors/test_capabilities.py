"""Which optional capabilities each provider declares (the protocols in connectors/base.py).

Checked on bare instances, since the declaration is the class's: no server is needed.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.connectors.base import (
    BusyFromSync,
    Calendar,
    ConcurrentWrites,
    ConfirmsSend,
    MailboxSettings,
    Mailer,
    ReplyReader,
    SendsInvitations,
)
from agent.connectors.caldav import CalDAVCalendar
from agent.connectors.exchange import ExchangeCalendar, ExchangeMailer
from agent.connectors.google import GoogleCalendar, GoogleMailer, GoogleReplyMailer
from agent.connectors.local import LocalCalendar, OutboxMailer
from agent.connectors.microsoft import MicrosoftCalendar, MicrosoftMailer
from agent.connectors.smtp import SmtpMailer

CALENDARS: dict[type[Any], set[type[Any]]] = {
    GoogleCalendar: {ConcurrentWrites, SendsInvitations},
    MicrosoftCalendar: {ConcurrentWrites, SendsInvitations, MailboxSettings},
    ExchangeCalendar: {SendsInvitations},
    CalDAVCalendar: {BusyFromSync},
    LocalCalendar: set(),
}
MAILERS: dict[type[Any], set[type[Any]]] = {
    GoogleMailer: {ConfirmsSend},
    GoogleReplyMailer: {ConfirmsSend, ReplyReader},
    MicrosoftMailer: {ConfirmsSend, ReplyReader},
    ExchangeMailer: {ConfirmsSend},
    SmtpMailer: {ConfirmsSend},
    OutboxMailer: {ConfirmsSend, ReplyReader},
}


@pytest.mark.parametrize("cls", list(CALENDARS), ids=lambda c: c.__name__)
def test_calendar_declares_what_it_can(cls: type[Any]) -> None:
    calendar = object.__new__(cls)
    assert isinstance(calendar, Calendar)
    expected = CALENDARS[cls]
    for capability in (ConcurrentWrites, MailboxSettings, SendsInvitations, BusyFromSync):
        assert isinstance(calendar, capability) == (capability in expected), capability


@pytest.mark.parametrize("cls", list(MAILERS), ids=lambda c: c.__name__)
def test_mailer_declares_what_it_can(cls: type[Any]) -> None:
    mailer = object.__new__(cls)
    assert isinstance(mailer, Mailer)
    for capability in (ConfirmsSend, ReplyReader):
        assert isinstance(mailer, capability) == (capability in MAILERS[cls]), capability
