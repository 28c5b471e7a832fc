"""Soak over the CalDAV provider: a real Radicale and a real aiosmtpd, a share of all
requests and mail transactions faulted, then calm. The same comparison as
``tests/test_soak.py``: after the faults stop, the next ticks reach the state of a
fault-free run (the same bookings and mails, nothing twice, nothing missing), and no
request reaches a throttled user before the Retry-After it was given.

The CalDAV faults include those the Google and Graph soaks leave out: added latency,
answers held past the client's timeout and connections closed without an answer.
SMTP cannot tell whether an interrupted send went out: such a mail is left
``uncertain`` and never sent again, so a mail may be missing only where a send was
left uncertain.

Mails are compared by outbox key (meeting and kind, found in each run's store by the
mail's Message-ID, which is keyed by that store's own secret) and recipients, not by
subject: an invitation names its slot, and a booking deferred by a
fault may land in another slot than in the fault-free run (see ``tests/test_soak.py``).

``make test`` runs a short version; ``make soak`` the full one (SOAK=200x20).
"""

from __future__ import annotations

import collections
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import icalendar
import niquests
import pytest

from agent.formats.ical import KEY_PROPERTY
from agent.settings import config
from agent.store.sqlite import Store
from tests.caldav.servers import Radicale, SmtpSink, client_ics
from tests.test_soak import Clock, Outcome, _history, _org, _ticks, size

pytestmark = pytest.mark.slow

PASSWORD_ENV = "SOAK_CALDAV_PASSWORD"
#: the size ``make test`` runs (each relationship costs more than on the fake servers)
SHORT = (24, 6)
#: the client's timeout; a "timeout" fault holds its answer twice as long
TIMEOUT = 0.5

ACCOUNT = """\
timezone: Europe/Berlin
store: cadence.db
accounts:
  team:
    provider: caldav
    url: {url}
    username: cadence
    password_env: {password_env}
    timeout: {timeout}
    smtp: {{host: 127.0.0.1, port: {port}, starttls: false}}
people:
{people}
"""


@dataclass
class Storm(Outcome):
    #: outbox keys of the sends left uncertain
    uncertain_ids: frozenset[str] = frozenset()
    #: SMTP transactions (``requests`` counts them and the CalDAV requests)
    transactions: int = 0


def _user(email: str) -> str:
    return email.split("@")[0]


def _bookings(radicale: Radicale, users: list[str]) -> collections.Counter[str]:
    """The agent's live events on every calendar, by booking key."""
    query = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        "<D:prop><C:calendar-data/></D:prop>"
        '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"/>'
        "</C:comp-filter></C:filter></C:calendar-query>"
    )
    found: collections.Counter[str] = collections.Counter()
    with niquests.Session() as session:
        for user in users:
            r = session.request(
                "REPORT",
                radicale.calendar_url(user),
                data=query.encode(),
                headers={"Depth": "1", "Content-Type": "application/xml"},
                auth=("soak", "x"),
            )
            assert r.status_code == 207, r.status_code
            for data in _calendar_data(r.content or b""):
                cal = icalendar.Calendar.from_ical(data)
                for vevent in cal.walk("VEVENT"):
                    key = vevent.get(KEY_PROPERTY)
                    if key and str(vevent.get("STATUS", "")).upper() != "CANCELLED":
                        found[str(key)] += 1
    return found


def _calendar_data(multistatus: bytes) -> list[str]:
    from xml.etree import ElementTree

    tag = "{urn:ietf:params:xml:ns:caldav}calendar-data"
    return [e.text or "" for e in ElementTree.fromstring(multistatus).iter(tag)]


def _mails(sink: SmtpSink, settings: config.Settings) -> collections.Counter[str]:
    ids = collections.Counter(str(m["Message-ID"]) for m in sink.messages())
    assert max(ids.values(), default=1) == 1, "a mail was sent twice"
    store = Store(settings.store)
    try:
        keys = {r["message_id"]: r["key"] for r in store.outbox_rows()}
    finally:
        store.close()
    return collections.Counter(f"{keys[str(m['Message-ID'])]} → {m['To']}" for m in sink.messages())


def _uncertain(settings: config.Settings) -> frozenset[str]:
    """The outbox keys of the sends left uncertain."""
    store = Store(settings.store)
    try:
        return frozenset(r["key"] for r in store.outbox_rows() if r["status"] == "uncertain")
    finally:
        store.close()


def run_caldav(tmp: Path, relationships: int, ticks: int, rate: float) -> Storm:
    people, rest, leaders = _org(relationships)
    users = [_user(e) for e, _, _ in people]
    clock = Clock()
    tmp.mkdir(parents=True)
    with Radicale(tmp / "radicale", hold=2 * TIMEOUT) as radicale, SmtpSink() as smtp:
        for user in users:
            radicale.make_calendar(user)
        lines = "\n".join(
            f"  - {{email: {e}, name: {n}, timezone: {z}, "
            f"calendar: {radicale.calendar_url(_user(e))}}}"
            for e, n, z in people
        )
        path = tmp / "cadence.yaml"
        path.write_text(
            ACCOUNT.format(
                url=radicale.url,
                password_env=PASSWORD_ENV,
                timeout=TIMEOUT,
                port=smtp.port,
                people=lines,
            )
            + rest
        )
        os.environ[PASSWORD_ENV] = "soak-secret"
        count = iter(range(10**9))

        def add(owner: str, title: str, start: datetime, end: datetime, who: str) -> None:
            # a meeting held by two people: on both calendars, as their clients keep it
            uid = f"held-{next(count)}"
            ics = client_ics(uid, title, start, end, organizer=owner, attendees=[owner, who])
            for email in (owner, who):
                radicale.put(radicale.calendar_url(_user(email)) + f"{uid}.ics", ics)

        _history(relationships, leaders, add)
        seed = relationships * 1000 + ticks
        if rate:
            radicale.chaos(rate, seed=seed, clock=clock)
            smtp.chaos(rate, seed=seed)

        def calm() -> None:
            radicale.chaos_rate = smtp.chaos_rate = 0.0

        try:
            settings = config.load(path)
            _ticks(settings, clock, ticks, calm)
        finally:
            os.environ.pop(PASSWORD_ENV, None)
        faults = radicale.chaos_count + collections.Counter(
            {f"smtp {k}": n for k, n in smtp.chaos_count.items()}
        )
        uncertain = _uncertain(settings)
        return Storm(
            _bookings(radicale, users),
            _mails(smtp, settings),
            list(radicale.early),
            faults,
            len(radicale.requests) + smtp.transactions,
            uncertain=len(uncertain),
            uncertain_ids=uncertain,
            transactions=smtp.transactions,
        )


def test_caldav_faults_then_calm_reach_the_fault_free_state(tmp_path: Path) -> None:
    relationships, ticks = size() if "SOAK" in os.environ else SHORT
    started = time.monotonic()
    calm = run_caldav(tmp_path / "calm", relationships, ticks, 0.0)
    stormy = run_caldav(tmp_path / "stormy", relationships, ticks, 0.3)
    print(
        f"\nsoak (caldav): {relationships} relationships, {ticks} ticks at 30 % faults "
        f"({sum(stormy.faults.values())} faults: {dict(stormy.faults)}; "
        f"{stormy.requests - stormy.transactions} CalDAV requests, {stormy.transactions} "
        f"SMTP transactions); bookings {len(stormy.bookings)}, mails "
        f"{len(stormy.mails)} of {len(calm.mails)} ({stormy.uncertain} interrupted sends "
        f"left uncertain), early requests {len(stormy.early)}; "
        f"{time.monotonic() - started:.0f} s for both runs"
    )
    assert sum(stormy.faults.values()) > relationships  # the storm was real
    assert calm.bookings and calm.mails and calm.uncertain == 0
    assert max(stormy.bookings.values()) == 1 and max(stormy.mails.values()) == 1  # nothing twice
    assert set(stormy.bookings) == set(calm.bookings)  # nothing missing, nothing extra
    # nothing missing, except sends interrupted before the server's answer: SMTP cannot
    # tell whether they went out, so they are left uncertain and never repeated
    missing = {m.split(" → ")[0] for m in set(calm.mails) - set(stormy.mails)}
    assert set(stormy.mails) <= set(calm.mails)
    assert missing <= stormy.uncertain_ids
    assert stormy.early == []  # Retry-After honoured
