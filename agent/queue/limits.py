"""Per-account limits that hold across every worker: in Redis.

- ``sync.rate``/``sync.burst``: a token bucket kept in one Redis hash per account and
  taken from by a Lua script, so that reading the tokens and spending one is atomic
  whichever worker asks (Redis's own clock, so workers' clocks do not matter).
- ``sync.concurrency``: a semaphore of expiring slots (a sorted set of holders by
  expiry): a worker killed while holding a slot frees it when the slot expires.
- A provider's Retry-After: a key with that TTL per mailbox, checked before requests
  (``agent.core.pauses``).

They have the interface of the single process's limits (``threading.BoundedSemaphore``
as a context manager, ``TokenBucket.take``), so the sync step uses either unchanged.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

#: every key begins with the queue's name (``queue.name``), so deployments can share Redis
PREFIX = "cadence"

#: spend one token; return the milliseconds to wait until it is ours (0: at once)
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil then
  tokens = burst
  stamp = now
end
tokens = math.min(burst, tokens + (now - stamp) * rate / 1000)
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
if tokens >= 0 then
  return 0
end
return math.ceil(-tokens * 1000 / rate)
"""

#: take a slot if fewer than the limit are held (expired ones dropped first): 1 or 0
_ACQUIRE = """
local limit = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 1
end
return 0
"""


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)


class SharedBucket:
    """``sync.rate`` requests a second for one account, across every worker."""

    def __init__(
        self,
        client: redis.Redis,
        account: str,
        rate: float,
        burst: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.key = f"{PREFIX}:{account}:bucket"
        self.rate, self.burst = rate, burst
        self._take = client.register_script(_TAKE)
        self._sleep = sleep

    def take(self) -> float:
        """Take one token, waiting as long as needed; return the seconds waited."""
        wait = int(self._take(keys=[self.key], args=[self.rate, self.burst])) / 1000
        if wait:
            self._sleep(wait)
        return wait


#: how long a slot outlives a holder that stopped renewing it (a killed worker), seconds:
#: short, for its calls wait that long; renewed every third of it, so a holder
#: starved of CPU for a few seconds still keeps what it holds
SLOT_TTL = 20.0


class SharedSemaphore:
    """At most ``limit`` holders at once across every worker.

    Each slot expires ``ttl`` seconds after it was last renewed, and a thread of the
    holding process renews its slots every ``ttl / 3``: a slot outlives its holder by at
    most ``ttl``, however long the holder legitimately keeps it (a slow calendar).
    """

    def __init__(
        self,
        client: redis.Redis,
        account: str,
        limit: int,
        ttl: float = SLOT_TTL,
        poll: float = 0.05,
    ) -> None:
        self.key = f"{PREFIX}:{account}:slots"
        self.limit, self.ttl, self.poll = limit, ttl, poll
        self._client = client
        self._acquire = client.register_script(_ACQUIRE)
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None

    def acquire(self) -> str:
        token = uuid.uuid4().hex
        args: list[int | str] = [self.limit, int(self.ttl * 1000), token]
        while not int(self._acquire(keys=[self.key], args=args)):
            time.sleep(self.poll)
        with self._lock:
            self._held.add(token)
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew, name="cadence-slots", daemon=True
                )
                self._renewer.start()
        return token

    def release(self, token: str) -> None:
        with self._lock:
            self._held.discard(token)
        self._client.zrem(self.key, token)

    def _renew(self) -> None:
        while True:
            time.sleep(self.ttl / 3)
            with self._lock:
                held = list(self._held)
            if not held:
                continue
            try:
                seconds, micros = self._client.time()
                until = seconds * 1000 + micros // 1000 + int(self.ttl * 1000)
                # XX: only slots still there (a slot that expired meanwhile is not revived)
                self._client.zadd(self.key, dict.fromkeys(held, until), xx=True)
                self._client.pexpire(self.key, int(self.ttl * 1000))
            except redis.RedisError:
                continue  # Redis away: the slots expire, the limit errs on the safe side

    def held(self) -> int:
        """How many unexpired slots are taken (for tests and metrics)."""
        seconds, micros = self._client.time()
        now_ms = seconds * 1000 + micros // 1000
        return int(self._client.zcount(self.key, now_ms, "+inf"))


class Gate:
    """The sync step's ``with gate:`` over a shared semaphore (a slot per entry)."""

    def __init__(self, semaphore: SharedSemaphore) -> None:
        self.semaphore = semaphore
        self._tokens: dict[int, list[str]] = {}

    def __enter__(self) -> Gate:
        token = self.semaphore.acquire()
        self._tokens.setdefault(threading.get_ident(), []).append(token)
        return self

    def __exit__(self, *exc: object) -> None:
        self.semaphore.release(self._tokens[threading.get_ident()].pop())


class Pauses:
    """Retry-After per mailbox, seen by every worker (``agent.core.pauses.Keeper``)."""

    def __init__(self, client: redis.Redis, namespace: str = PREFIX) -> None:
        self._client = client
        self.namespace = namespace

    def _key(self, mailbox: str) -> str:
        return f"{PREFIX}:{self.namespace}:pause:{mailbox.lower()}"

    def pause(self, mailbox: str, seconds: float) -> None:
        key = self._key(mailbox)
        ms = max(1, int(seconds * 1000))
        # a longer pause already set stays: SET with GT needs a number, so compare here
        left = int(self._client.pttl(key))
        if left < ms:
            self._client.set(key, "1", px=ms)

    def remaining(self, mailbox: str) -> float:
        left = int(self._client.pttl(self._key(mailbox)))
        return left / 1000 if left > 0 else 0.0


def limits_for(
    client: redis.Redis, accounts: Any, sync: Any, ttl: float = SLOT_TTL
) -> dict[str, tuple[Gate, SharedBucket | None]]:
    """Per account, the shared ``(gate, bucket)`` the sync step takes."""
    return {
        account: (
            Gate(SharedSemaphore(client, account, sync.concurrency, ttl)),
            SharedBucket(client, account, sync.rate, sync.burst) if sync.rate else None,
        )
        for account in accounts
    }
