"""Advisory-lock leases in a real PostgreSQL: one holder at a time, none left behind by a
holder whose connection is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from agent.queue.leases import Leases, Taken, key_of
from tests.queue import services


@pytest.fixture
def namespace() -> str:
    services.require("postgres")
    return services.queue_name()


def test_a_unit_is_held_by_one_connection_at_a_time(namespace: str) -> None:
    one, two, three = (Leases(services.POSTGRES, namespace) for _ in range(3))
    try:
        with one.holding(["person:ana", "person:ben"]):
            # a unit that shares one person waits, and holds nothing meanwhile: abe,
            # taken before ben was found taken, is given back
            with pytest.raises(Taken), two.holding(["person:abe", "person:ben"]):
                pass
            assert three.try_take("person:abe")
            three.give_back("person:abe")
        with two.holding(["person:abe", "person:ben"]):
            assert not three.try_take("person:ben")
    finally:
        for leases in (one, two, three):
            leases.close()


def test_a_killed_holder_frees_its_leases(namespace: str) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from agent.queue.leases import Leases; "
            f"l = Leases({services.POSTGRES!r}, {namespace!r}); "
            "assert l.try_take('person:ana'); print('held', flush=True); time.sleep(60)",
        ],
        env=services.environ(),
        stdout=subprocess.PIPE,
        text=True,
    )
    leases = Leases(services.POSTGRES, namespace)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert not leases.try_take("person:ana")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(5)
        services.wait_for(lambda: leases.try_take("person:ana"), 10, "the lease to be free")
    finally:
        leases.close()
        if holder.poll() is None:
            holder.kill()
        if holder.stdout is not None:
            holder.stdout.close()


def test_keys_are_stable_64_bit_numbers() -> None:
    assert key_of("cadence:person:ana") == key_of("cadence:person:ana")
    assert key_of("a:person:ana") != key_of("b:person:ana")
    assert -(2**63) <= key_of("x") < 2**63
