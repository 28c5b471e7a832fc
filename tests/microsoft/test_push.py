"""Graph change notifications to a running service, over HTTPS from the fake Graph: the
validation handshake, a decline answered by a move, clientState checked on every
notification, lifecycle notifications (missed, subscriptionRemoved,
reauthorizationRequired), and subscriptions deleted when no longer needed."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.app.service import Service
from agent.settings import config
from agent.tick import metrics as metrics_mod
from tests import programs
from tests.environ import clean_environ
from tests.google.test_push import free_port
from tests.microsoft.fixtures import ACCOUNT_SETTINGS, add_deep_dives, people, write_config
from tests.microsoft.server import GraphServer

ANA, BEN, CHLOE = "ana@contoso.example", "ben@contoso.example", "chloe@contoso.example"
SECRET_ENV = "CADENCE_GRAPH_SECRET"


def wait_for(check: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@contextmanager
def serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str = ""
) -> Iterator[tuple[GraphServer, Service]]:
    staff = people()
    port = free_port()
    template = (
        programs.config("m365", ACCOUNT_SETTINGS)
        + f"service:\n  host: 127.0.0.1\n  port: {port}\n"
        + f"push:\n  public_url: http://127.0.0.1:{port}/push\n  debounce: 1s\n{extra}"
    )
    with clean_environ(), GraphServer([p.email for p in staff]) as server:
        path = write_config(server, tmp_path, template, SECRET_ENV)
        monkeypatch.setenv(SECRET_ENV, server.client_secret or "")
        now = datetime.now(UTC)
        add_deep_dives(server, staff, now - timedelta(days=120), now - timedelta(days=20))
        service = Service(config.load(path))
        assert service.push is not None
        service.push.start()
        service.start_http()
        try:
            yield server, service
        finally:
            service.stop_http()
            service.push.stop()
            metrics_mod.deactivate()


def booked(server: GraphServer) -> dict[str, Any]:
    return next(e for e in server.events_of(ANA) if e.get("transactionId"))


def deltas(server: GraphServer, email: str) -> int:
    with server.lock:
        return sum(
            1
            for route, target in server.log
            if route == "delta" and f"/users/{email}/" in urllib.parse.unquote(target)
        )


def test_a_decline_is_moved_and_forged_notifications_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(tmp_path, monkeypatch) as (server, service):
        service.tick()
        subs = {e: server.subscriptions.on(e) for e in (ANA, BEN, CHLOE)}
        assert all(len(s) == 1 for s in subs.values())
        (ana_sub,) = subs[ANA]
        assert ana_sub.change_types == {"created", "updated", "deleted"}
        assert ana_sub.lifecycle_url == ana_sub.url
        server.subscriptions.drain()

        meeting = booked(server)
        chloe_reads = deltas(server, CHLOE)
        with server.lock:
            copy_id = next(
                ev.id
                for ev in server.mailboxes[BEN].events.values()
                if ev.master_of_copy and ev.master_of_copy[1] == meeting["id"]
            )
        server.respond(BEN, copy_id, "declined")
        wait_for(lambda: booked(server)["start"] != meeting["start"])
        assert booked(server)["id"] == meeting["id"]
        assert deltas(server, CHLOE) == chloe_reads  # only the notified calendars read

        # a forged clientState, an unknown subscription: refused, nothing read
        forged = {"subscriptionId": ana_sub.id, "clientState": "guess", "changeType": "updated"}
        assert server.subscriptions.post(ana_sub.url, {"value": [forged]}) == 403
        unknown = {**forged, "subscriptionId": "nope", "clientState": ana_sub.client_state}
        assert server.subscriptions.post(ana_sub.url, {"value": [unknown]}) == 403
        assert server.subscriptions.post(ana_sub.url, {"nothing": 1}) == 400
        text = service.metrics.exposition().decode()
        assert (
            'cadence_push_notifications_total{provider="microsoft",result="rejected"} 3.0' in text
        )
        assert 'provider="microsoft",result="validation"} 3.0' in text


def test_lifecycle_notifications_and_leavers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(tmp_path, monkeypatch) as (server, service):
        service.tick()
        server.subscriptions.drain()
        # missed: the calendar is read again at once
        before = deltas(server, CHLOE)
        server.subscriptions.lifecycle(CHLOE, "missed")
        wait_for(lambda: deltas(server, CHLOE) > before)
        # removed: a new subscription is made
        (old,) = server.subscriptions.on(BEN)
        server.subscriptions.lifecycle(BEN, "subscriptionRemoved")
        wait_for(lambda: len(server.subscriptions.on(BEN)) == 1)
        (new,) = server.subscriptions.on(BEN)
        assert new.id != old.id
        # reauthorization required: the subscription is renewed (PATCH), not replaced
        (ana_sub,) = server.subscriptions.on(ANA)
        patches = server.counts["subscriptions.patch"]
        server.subscriptions.lifecycle(ANA, "reauthorizationRequired")
        wait_for(lambda: server.counts["subscriptions.patch"] > patches)
        assert [s.id for s in server.subscriptions.on(ANA)] == [ana_sub.id]
        # states are back to active once the calendars were read
        wait_for(
            lambda: (
                'cadence_push_channels{state="active"} 3.0' in service.metrics.exposition().decode()
            )
        )

        # Chloe's relationship ends: her subscription is deleted
        path = service.settings.path
        path.write_text(
            path.read_text().replace(
                "  - {employee: chloe@contoso.example, partner: ben@contoso.example,"
                " program: leader-cycle}\n",
                "",
            )
        )
        service.settings = config.load(path)
        service.tick()
        assert server.subscriptions.on(CHLOE) == []
        assert server.counts["subscriptions.delete"] == 1


def test_a_subscription_near_its_end_is_extended_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # renew_before longer than Graph's longest lifetime: every upkeep extends
    with serving(tmp_path, monkeypatch, "  renew_before: 8d\n") as (server, service):
        service.tick()
        ids = {e: [s.id for s in server.subscriptions.on(e)] for e in (ANA, BEN, CHLOE)}
        assert server.counts["subscriptions.patch"] == 0
        service.tick()
        assert server.counts["subscriptions.patch"] == 3
        assert {e: [s.id for s in server.subscriptions.on(e)] for e in ids} == ids
        (sub,) = server.subscriptions.on(ANA)
        assert sub.expires - datetime.now(UTC) > timedelta(days=6, hours=23)
