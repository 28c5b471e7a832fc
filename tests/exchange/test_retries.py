"""Retries never repeat what may have taken effect: a mail whose answer was lost is not
sent again, by Cadence's retry policy or by exchangelib's own back-off; a busy server
(which certainly did nothing) is waited out and the mail then sent once."""

from __future__ import annotations

from pathlib import Path

import pytest
from exchangelib.protocol import Protocol

from agent.connectors.exchange import ExchangeCalendar, ExchangeMailer
from agent.core.errors import TransientError
from agent.core.model import Person
from agent.core.retry import RetryPolicy
from tests.exchange import fixtures
from tests.exchange.server import EwsServer
from tests.exchange.test_events import KEY, draft
from tests.exchange.test_mail import mail


def retrying(slept: list[float]) -> RetryPolicy:
    return RetryPolicy(attempts=3, sleep=slept.append, rand=lambda: 0.0)


def test_a_send_whose_answer_was_lost_is_not_repeated(
    server: EwsServer, ca: Path, staff: list[Person]
) -> None:
    server.lose_response("CreateItem")
    mailer = ExchangeMailer(fixtures.ews(server, ca, retrying([])))
    try:
        with pytest.raises(TransientError) as caught:
            mailer.send(mail(staff))
    finally:
        mailer.close()
    assert caught.value.maybe_done
    assert len(server.sent) == 1


def test_a_busy_server_did_not_send_so_the_send_waits_and_goes_once(
    server: EwsServer, ca: Path, staff: list[Person]
) -> None:
    server.throttle("CreateItem", back_off_ms=3000)
    slept: list[float] = []
    mailer = ExchangeMailer(fixtures.ews(server, ca, retrying(slept)))
    try:
        mailer.send(mail(staff))
    finally:
        mailer.close()
    assert slept == [3.0]
    assert len(server.sent) == 1


@pytest.fixture
def quick_back_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """exchangelib waits 10 s before it repeats a request that met a 503: 50 ms here."""
    monkeypatch.setattr(Protocol, "RETRY_WAIT", 0.05)


@pytest.mark.usefixtures("quick_back_off")
def test_exchangelibs_own_back_off_repeats_no_send(
    server: EwsServer, ca: Path, staff: list[Person]
) -> None:
    server.lose_response("CreateItem")
    mailer = ExchangeMailer(fixtures.ews(server, ca, max_wait="60s"))
    try:
        with pytest.raises(TransientError):
            mailer.send(mail(staff))
    finally:
        mailer.close()
    assert len(server.sent) == 1


@pytest.mark.usefixtures("quick_back_off")
def test_exchangelibs_own_back_off_makes_no_second_meeting(
    server: EwsServer, ca: Path, staff: list[Person]
) -> None:
    server.lose_response("CreateItem")
    cal = ExchangeCalendar(fixtures.ews(server, ca, retrying([]), max_wait="60s"), staff)
    try:
        event = cal.create(draft(staff))
    finally:
        cal.close()
    assert event.key == KEY
    assert len([i for i in server.items_of(staff[0].email) if i.ext]) == 1


@pytest.mark.usefixtures("quick_back_off")
def test_exchangelibs_own_back_off_still_waits_out_a_read(
    server: EwsServer, ca: Path, staff: list[Person]
) -> None:
    from datetime import UTC, datetime

    from agent.core.model import Interval

    server.lose_response("FindItem")
    cal = ExchangeCalendar(fixtures.ews(server, ca, max_wait="60s"), staff)
    window = Interval(datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 31, tzinfo=UTC))
    try:
        assert cal.changes(staff[0], None, window).full
    finally:
        cal.close()
    assert server.counts["FindItem"] == 2
