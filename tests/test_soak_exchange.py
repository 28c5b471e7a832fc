"""Soak over the local EWS server: many relationships over many ticks with a share of all
requests faulted (ErrorServerBusy with a back-off, SOAP and proxy 5xx, answers lost after
the operation took effect, dropped connections, latency, answers held past the client's
timeout), then calm. The next ticks must reach the state a fault-free run reaches: the
same bookings, each once; the same mails, each once (a send interrupted after Exchange
may have carried it out is looked for in the sender's Sent Items, and sent again only if
it is not there); and no request to a mailbox's operation before the back-off it was
given.

``make test`` runs a short version; ``make soak`` the full one (SOAK=200x20). The shared
pieces (program, history, clock, ticks) are those of ``tests/test_soak.py``.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
from exchangelib.protocol import Protocol

from agent.connectors.exchange import KEY_NAME, KEY_SET
from agent.settings import config
from tests.exchange.server import CHAOS_KINDS, EwsServer
from tests.test_soak import Clock, Outcome, _history, _mails, _org, _ticks, _uncertain, size

pytestmark = pytest.mark.slow

PASSWORD_ENV = "SOAK_EWS_PASSWORD"
#: the client's read timeout and how long a ``timeout`` fault holds the answer: short,
#: since every such fault costs that much wall time
TIMEOUT, HOLD = 0.5, 0.6

ACCOUNT = """\
timezone: Europe/Berlin
store: cadence.db
accounts:
  onprem:
    provider: exchange
    server: {url}
    auth: basic
    username: {username}
    password_env: {password_env}
    access_type: impersonation
    version: "2016"
    ca_bundle: ews-ca.pem
    max_wait: 0s
defaults:
  account: onprem
people:
{people}
"""


def run_exchange(
    tmp: Path, relationships: int, ticks: int, rate: float, monkeypatch: pytest.MonkeyPatch
) -> Outcome:
    people, rest, leaders = _org(relationships)
    clock = Clock()
    tmp.mkdir(parents=True)
    with EwsServer({e: n for e, n, _ in people}) as server:
        server.write_ca(tmp / "ews-ca.pem")
        lines = "\n".join(f"  - {{email: {e}, name: {n}, timezone: {z}}}" for e, n, z in people)
        path = tmp / "cadence.yaml"
        path.write_text(
            ACCOUNT.format(
                url=server.url, username=server.username, password_env=PASSWORD_ENV, people=lines
            )
            + rest
        )
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        monkeypatch.setattr(Protocol, "TIMEOUT", TIMEOUT)
        settings = config.load(path)
        _history(
            relationships,
            leaders,
            lambda owner, title, start, end, who: server.add_event(owner, title, start, end, [who]),
        )
        if rate:
            server.chaos(rate, seed=relationships * 1000 + ticks, clock=clock)
            server.hold = HOLD

        def calm() -> None:
            server.chaos_rate = 0.0

        _ticks(settings, clock, ticks, calm)
        tag = (KEY_SET, KEY_NAME, "String")
        bookings: collections.Counter[str] = collections.Counter()
        for email in server.mailboxes:
            for item in server.items_of(email):
                if tag in item.ext and not item.cancelled:
                    bookings[item.ext[tag]] += 1
        return Outcome(
            bookings,
            _mails(list(server.sent)),
            list(server.early),
            server.chaos_count,
            sum(server.counts.values()),
            _uncertain(settings),
        )


def test_faults_then_calm_reach_the_fault_free_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relationships, ticks = size()
    calm = run_exchange(tmp_path / "calm", relationships, ticks, 0.0, monkeypatch)
    stormy = run_exchange(tmp_path / "stormy", relationships, ticks, 0.3, monkeypatch)
    print(
        f"\nsoak (exchange): {relationships} relationships, {ticks} ticks at 30 % faults "
        f"({sum(stormy.faults.values())} faults: {dict(stormy.faults)}; {stormy.requests} requests); "
        f"bookings {len(stormy.bookings)}, mails {len(stormy.mails)} of {len(calm.mails)} "
        f"({stormy.uncertain} interrupted sends left uncertain), early requests {len(stormy.early)}"
    )
    assert sum(stormy.faults.values()) > relationships  # the storm was real
    assert set(stormy.faults) == set(CHAOS_KINDS)  # every kind of fault was dealt
    assert calm.bookings and calm.mails and calm.uncertain == 0
    assert max(stormy.bookings.values()) == 1  # no meeting twice
    assert max(stormy.mails.values()) == 1  # no mail twice
    assert set(stormy.bookings) == set(calm.bookings)  # nothing missing, nothing extra
    # nothing missing: Sent Items tell whether an interrupted send went out
    assert set(stormy.mails) == set(calm.mails)
    assert stormy.uncertain == 0
    assert stormy.early == []  # BackOffMilliseconds honoured
