"""EWS pull notifications through the connector, against the local EWS server: the SOAP
of Subscribe, GetEvents and Unsubscribe as exchangelib sends and reads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.connectors.exchange import ExchangeCalendar
from agent.core.errors import CursorExpired, PermanentError, TransientError
from agent.core.model import Person
from tests.exchange import fixtures
from tests.exchange.server import EwsServer

HOUR = timedelta(hours=1)
#: what a calendar subscription asks to be told, spelled out as EWS names them
CALENDAR_CHANGES = {"CreatedEvent", "DeletedEvent", "ModifiedEvent", "MovedEvent", "CopiedEvent"}
START = datetime(2026, 12, 7, 9, tzinfo=UTC)


def test_a_change_arrives_after_the_watermark_and_only_once(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana, ben, _ = staff
    sub, mark = cal.subscribe(ana, HOUR)
    (kept,) = server.subscriptions_of(ana.email)
    assert kept.id == sub and kept.timeout == 60
    assert kept.types == CALENDAR_CHANGES
    assert cal.pull(ana, sub, mark) == (0, mark)  # a StatusEvent: nothing happened

    item = server.add_event(ana.email, "1:1", START, START + HOUR, [ben.email])
    changes, after = cal.pull(ana, sub, mark)
    assert changes == 1 and after != mark
    assert cal.pull(ana, sub, after) == (0, after)
    # Ben's answer changes Ana's item; removing it is one more event
    copy = server.mailboxes[ben.email].items[server._find(item).copies[ben.email]].id
    server.respond(ben.email, item, "Decline")
    server.delete(ana.email, item)
    changes, last = cal.pull(ana, sub, after)
    assert changes == 2
    # asking again from an older watermark hands the same events again (a restart)
    assert cal.pull(ana, sub, after)[0] == 2
    assert cal.pull(ana, sub, last) == (0, last)
    assert copy  # Ben's calendar is his own subscription's business
    cal.unsubscribe(ana, sub)
    assert server.subscriptions_of(ana.email) == []
    cal.unsubscribe(ana, sub)  # already ended: nothing to do


def test_more_events_than_one_answer_holds(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana = staff[0]
    server.events_per_call = 3
    sub, mark = cal.subscribe(ana, HOUR)
    for i in range(7):
        server.add_event(ana.email, f"focus {i}", START + i * HOUR, START + (i + 1) * HOUR)
    before = server.counts["GetEvents"]
    changes, _ = cal.pull(ana, sub, mark)
    assert changes == 7
    assert server.counts["GetEvents"] - before == 3  # MoreEvents: asked until it is false


def test_a_lost_subscription_or_watermark_is_cursor_expired(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana = staff[0]
    sub, mark = cal.subscribe(ana, HOUR)
    with pytest.raises(CursorExpired, match="ErrorInvalidWatermark"):
        cal.pull(ana, sub, "bm90IGEgd2F0ZXJtYXJr")
    server.expire(ana.email)
    with pytest.raises(CursorExpired, match="ErrorSubscriptionNotFound"):
        cal.pull(ana, sub, mark)


def test_refusals_and_throttling(server: EwsServer, ca: Path, staff: list[Person]) -> None:
    ana = staff[0]
    server.add_delegate(ana.email, server.username)
    delegate = ExchangeCalendar(fixtures.ews(server, ca, access_type="delegate"), staff)
    try:
        with pytest.raises(PermanentError, match="DelegateAccessNotSupported"):
            delegate.subscribe(ana, HOUR)
    finally:
        delegate.close()
    cal = ExchangeCalendar(fixtures.ews(server, ca), staff)
    try:
        server.throttle("Subscribe")
        with pytest.raises(TransientError):
            cal.subscribe(ana, HOUR)
        server.offers_subscriptions = False
        with pytest.raises(PermanentError, match="ErrorInvalidSubscriptionRequest"):
            cal.subscribe(ana, HOUR)
    finally:
        cal.close()
