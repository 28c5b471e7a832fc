"""The random-fault modes of the test servers, one fault kind at a time: what the
connectors see, and whether the server kept what was sent. The soak
(``tests/test_soak_caldav.py``) relies on each kind doing what it says."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.connectors.caldav import CalDAVCalendar, make_client
from agent.connectors.smtp import SmtpMailer
from agent.core.errors import TransientError
from agent.core.model import Person
from agent.core.retry import RetryPolicy
from tests.caldav.servers import CHAOS_KINDS, SMTP_CHAOS_KINDS, Radicale, SmtpSink
from tests.caldav.test_bookings import draft, objects
from tests.caldav.test_smtp import mail
from tests.test_soak import Clock

START = datetime(2026, 11, 10, 9, tzinfo=UTC)
TIMEOUT = 0.3


@pytest.fixture
def fragile(radicale: Radicale, team: dict[str, Person]) -> Iterator[CalDAVCalendar]:
    """A calendar client with a short timeout and no retries: each fault surfaces."""
    radicale.hold = 2 * TIMEOUT
    client = make_client(radicale.url, "cadence", "not-checked", timeout=TIMEOUT)
    cal = CalDAVCalendar(
        client,
        calendars={p.email: radicale.calendar_url(user) for user, p in team.items()},
        account_username="cadence",
        retry=RetryPolicy.none(),
    )
    yield cal
    cal.close()


#: fault kind → (the create fails, the event was stored anyway)
EXPECTED = {
    "429": (True, False),
    "503": (True, False),
    "500": (True, False),
    "502": (True, False),
    "lost": (True, True),
    "cut": (True, True),
    "drop": (True, False),
    "slow": (False, True),
    "timeout": (True, True),
}


@pytest.mark.parametrize("kind", list(CHAOS_KINDS))
def test_each_caldav_fault(
    kind: str, fragile: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    fails, stored = EXPECTED[kind]
    radicale.chaos(1.0, seed=1, clock=Clock(), kinds=[kind])
    started = time.monotonic()
    if fails:
        with pytest.raises(TransientError) as raised:
            fragile.create(draft(team, START))
        throttled = kind in ("429", "503")
        assert (raised.value.retry_after == 2) is throttled, raised.value
    else:
        fragile.create(draft(team, START))
    took = time.monotonic() - started
    assert radicale.chaos_count == {kind: 1}
    assert bool(objects(radicale, "ben")) is stored
    if kind == "slow":
        assert took >= radicale.latency
    if kind == "timeout":
        assert TIMEOUT <= took < radicale.hold


def test_a_throttled_user_called_before_retry_after_is_recorded(
    fragile: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    clock = Clock()
    radicale.chaos(1.0, seed=1, clock=clock, kinds=["429"])
    with pytest.raises(TransientError):
        fragile.create(draft(team, START))
    radicale.chaos_rate = 0.0
    clock.sleep(1.5)
    # 0.5 s early, even after the storm: a GET and, as it is not there, a query
    assert fragile.find(team["ben"], draft(team, START).key) is None
    assert radicale.early == ["ben 0.50s early"] * 2
    fragile.find(team["ana"], "another-key")  # another user is not throttled
    clock.sleep(0.5)
    fragile.find(team["ben"], "another-key")  # on time
    assert radicale.early == ["ben 0.50s early"] * 2


#: fault kind → (the send may be retried, the server kept the message)
SMTP_EXPECTED = {
    "421": (True, False),
    "451": (True, False),
    "drop": (False, False),
    "lost": (False, True),
}


@pytest.mark.parametrize("kind", SMTP_CHAOS_KINDS)
def test_each_smtp_fault(kind: str, tmp_path: Path) -> None:
    retryable, kept = SMTP_EXPECTED[kind]
    with SmtpSink() as sink:
        sink.chaos(1.0, seed=1, kinds=[kind])
        mailer = SmtpMailer("127.0.0.1", sink.port, ssl_mode="plain", retry=RetryPolicy.none())
        with pytest.raises(TransientError) as raised:
            mailer.send(mail())
        # not maybe_done: certainly not sent, so the send may be tried again
        assert raised.value.maybe_done is not retryable, raised.value
        assert len(sink.received) == int(kept)
        sink.chaos_rate = 0.0
        mailer.send(mail())  # the server still works after the fault
        assert len(sink.received) == int(kept) + 1
        assert sink.chaos_count == {kind: 1} and sink.transactions == 2
