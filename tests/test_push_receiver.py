"""The receiver's own rules, without a provider: per-source rate limits and the
debounce of the reactor."""

from __future__ import annotations

import threading
import time

from agent.app.receiver import Pending, Reactor, Receiver, _Sources


def test_each_source_is_limited_on_its_own() -> None:
    sources = _Sources(rate=2, burst=3)
    assert [sources.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert sources.allow("b", 0.0)  # another address has its own bucket
    assert not sources.allow("a", 0.2)
    assert sources.allow("a", 0.6)  # a token back after half a second


def test_a_burst_for_one_calendar_gives_one_batch_after_the_debounce() -> None:
    batches: list[dict[str, Pending]] = []
    done = threading.Event()

    def act(batch: dict[str, Pending]) -> None:
        batches.append(batch)
        done.set()

    reactor = Reactor(0.3, act)
    reactor.start()
    try:
        started = time.monotonic()
        for _ in range(10):
            reactor.put("ana@acme.example")
        reactor.put("ben@acme.example", "missed")
        assert done.wait(5)
        waited = time.monotonic() - started
        time.sleep(0.5)
    finally:
        reactor.stop()
    assert waited >= 0.3
    assert len(batches) == 1
    (batch,) = batches
    assert batch["ana@acme.example"].count == 10
    assert batch["ben@acme.example"].kinds == {"missed"}


def test_graph_handshakes_pass_a_spent_limit_and_notifications_do_not() -> None:
    """A first tick makes thousands of subscriptions, each validated by Graph calling
    the receiver: their handshakes must not run the source out of its allowance."""
    receiver = Receiver(Reactor(1.0, lambda batch: None), rate=1)
    path, peer = "/push/microsoft", "203.0.113.9"
    assert all(receiver.admit(path, peer, {}, "validationToken=t") is None for _ in range(1000))
    assert [receiver.admit(path, peer, {"content-length": "2"}) for _ in range(6)][-1] == (
        429,
        "text/plain",
        b"too many requests\n",
    )
    # spent for notifications, still open for handshakes, which echo their token
    assert receiver.admit(path, peer, {}, "validationToken=again") is None
    assert receiver.answer(path, "validationToken=again", {}, b"") == (
        200,
        "text/plain",
        b"again",
    )
    # a handshake's pass is Graph's path only
    assert receiver.admit("/push/google", peer, {}, "validationToken=t") is not None
