"""busy(): GetUserAvailability for a batch of mailboxes, in UTC, 42 days at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.connectors.exchange import ExchangeCalendar
from agent.core.model import Interval, Person
from tests.exchange import fixtures
from tests.exchange.server import EwsServer, t

START = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


def test_one_request_for_everyone_with_tentative_busy_and_free_ignored(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana, ben, chloe = staff
    server.add_event(ben.email, "Busy", START, START + timedelta(hours=1))
    server.add_event(
        ben.email,
        "Maybe",
        START + timedelta(hours=2),
        START + timedelta(hours=3),
        free_busy="Tentative",
    )
    server.add_event(
        ben.email, "Free", START + timedelta(hours=4), START + timedelta(hours=5), free_busy="Free"
    )
    server.add_event(ana.email, "Ana's", START, START + timedelta(minutes=30), zone="Europe/Berlin")
    window = Interval(START - timedelta(days=1), START + timedelta(days=1))

    busy = cal.busy(staff, window)

    assert busy[ben.email] == [
        Interval(START, START + timedelta(hours=1)),
        Interval(START + timedelta(hours=2), START + timedelta(hours=3)),
    ]
    assert busy[ana.email] == [Interval(START, START + timedelta(minutes=30))]
    assert busy[chloe.email] == []
    assert server.counts["GetUserAvailability"] == 1
    [ask] = [r for r in server.requests if r.operation == "GetUserAvailability"]
    assert ask.body.findtext(f"{t('TimeZone')}/{t('Bias')}") == "0"  # asked in UTC
    assert len(ask.body.findall(f".//{t('MailboxData')}")) == 3


def test_long_windows_are_cut_at_42_days(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ben = staff[1]
    late = START + timedelta(days=60)
    server.add_event(ben.email, "Late", late, late + timedelta(hours=1))
    busy = cal.busy(staff, Interval(START, START + timedelta(days=90)))
    assert busy[ben.email] == [Interval(late, late + timedelta(hours=1))]
    assert server.counts["GetUserAvailability"] == 3  # 42 + 42 + 6 days


def test_more_than_100_mailboxes_take_two_requests(tmp_path: Path) -> None:
    staff = [
        Person(f"p{i:03d}@contoso.example", f"P {i}", "UTC", fixtures.HOURS) for i in range(130)
    ]
    with fixtures.server_for(staff) as server:
        server.add_event(staff[120].email, "Busy", START, START + timedelta(hours=1))
        connection = fixtures.ews(server, server.write_ca(tmp_path / "ca.pem"))
        cal = ExchangeCalendar(connection, staff)
        try:
            busy = cal.busy(staff, Interval(START, START + timedelta(days=1)))
        finally:
            cal.close()
    assert server.counts["GetUserAvailability"] == 2
    assert len(busy) == 130 and busy[staff[120].email] == [
        Interval(START, START + timedelta(hours=1))
    ]


def test_a_missing_mailbox_fails_alone(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ben = staff[1]
    server.add_event(ben.email, "Busy", START, START + timedelta(hours=1))
    gone = Person("gone@contoso.example", "Gone", "UTC", fixtures.HOURS)

    busy = cal.busy([*staff, gone], Interval(START, START + timedelta(days=1)))

    assert gone.email not in busy  # unknown time is not free time
    assert "ErrorMailRecipientNotFound" in busy.failed[gone.email]
    assert set(busy) == {p.email for p in staff}
    assert busy[ben.email] == [Interval(START, START + timedelta(hours=1))]
