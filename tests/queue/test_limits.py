"""Per-account limits shared by every worker, in a real Redis: two processes spend one
token bucket and one set of ``sync.concurrency`` slots; a killed holder's slot expires."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.queue import limits
from tests.queue import services

SCRIPT = r"""
import json, sys, time
from agent.queue import limits
what, key, out, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = limits.connect(sys.argv[5])
stamps = []
if what == "bucket":
    bucket = limits.SharedBucket(client, key, rate=20, burst=1)
    for _ in range(n):
        bucket.take()
        stamps.append(time.time())
else:
    gate = limits.Gate(limits.SharedSemaphore(client, key, limit=1, ttl=float(sys.argv[6])))
    for _ in range(n):
        with gate:
            start = time.time()
            time.sleep(float(sys.argv[7]))
            stamps.append([start, time.time()])
open(out, "w").write(json.dumps(stamps))
"""


@pytest.fixture
def key() -> Iterator[str]:
    services.require("redis")
    name = services.queue_name()
    yield f"{name}:acme"
    services.purge(name)


def spawn(tmp: Path, *args: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *map(str, args)],
        env=services.environ(),
    )


def test_two_processes_share_one_token_bucket(key: str, tmp_path: Path) -> None:
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    procs = [spawn(tmp_path, "bucket", key, out, 10, services.REDIS) for out in outs]
    for p in procs:
        assert p.wait(30) == 0
    stamps = sorted(itertools.chain.from_iterable(json.loads(o.read_text()) for o in outs))
    assert len(stamps) == 20
    # 20 tokens at 20 a second from a burst of 1: 19 intervals of 50 ms between them,
    # whichever process took each; two buckets of their own would take half the time
    assert stamps[-1] - stamps[0] >= 0.9
    for i in range(len(stamps) - 5):
        assert stamps[i + 5] - stamps[i] >= 0.2 - 0.02, "more than the rate in a window"


def test_two_processes_never_hold_more_than_the_concurrency(key: str, tmp_path: Path) -> None:
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    procs = [spawn(tmp_path, "slots", key, out, 4, services.REDIS, 30, 0.1) for out in outs]
    for p in procs:
        assert p.wait(30) == 0
    spans = sorted(itertools.chain.from_iterable(json.loads(o.read_text()) for o in outs))
    assert len(spans) == 8
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.005, f"two holders at once: {spans}"


def test_the_slot_of_a_killed_holder_expires(key: str, tmp_path: Path) -> None:
    holder = spawn(tmp_path, "slots", key, tmp_path / "held.json", 1, services.REDIS, 1.5, 60)
    client = limits.connect(services.REDIS)
    semaphore = limits.SharedSemaphore(client, key, limit=1, ttl=1.5)
    services.wait_for(lambda: semaphore.held() == 1, 15, "the holder's slot")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(5)
    started = time.monotonic()
    token = semaphore.acquire()  # waits for the dead holder's slot to expire
    # within the ttl (1.5 s) and a little: the holder would keep it for 60 s; the margin
    # is for a loaded machine, whose sleeps overrun
    assert time.monotonic() - started <= 3
    semaphore.release(token)
    assert semaphore.held() == 0


def test_a_pause_is_seen_by_another_process(key: str) -> None:
    namespace = key.split(":")[0]
    pauses = limits.Pauses(limits.connect(services.REDIS), namespace)
    pauses.pause("Ana@Acme.example", 2.0)
    seen = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from agent.queue import limits; "
            f"print(limits.Pauses(limits.connect({services.REDIS!r}), {namespace!r})"
            ".remaining('ana@acme.example'))",
        ],
        env=services.environ(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert 0.5 < float(seen.stdout) <= 2.0
    pauses.pause("ana@acme.example", 0.5)  # a shorter pause never cuts a longer one
    assert pauses.remaining("ana@acme.example") > 0.5


def test_a_live_holder_keeps_its_slot_past_the_ttl(key: str, tmp_path: Path) -> None:
    """The slot of a slow calendar is renewed while its holder lives."""
    holder = spawn(tmp_path, "slots", key, tmp_path / "held.json", 1, services.REDIS, 0.6, 60)
    try:
        semaphore = limits.SharedSemaphore(limits.connect(services.REDIS), key, limit=1)
        services.wait_for(lambda: semaphore.held() == 1, 15, "the holder's slot")
        time.sleep(1.5)  # more than twice the TTL
        assert semaphore.held() == 1
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(5)
    services.wait_for(lambda: semaphore.held() == 0, 5, "the dead holder's slot to expire")
