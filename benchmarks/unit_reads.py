"""What one scheduling unit's task reads from a PostgreSQL store, statement by statement.

The organization of ``benchmarks.org`` (half on the local Google server, half on the
local Graph server, no added latency) is ticked once in full into a fresh PostgreSQL
database at 127.0.0.1 (the first sync), then a sweep books the lapsed relationships;
then a new engine runs one unit's task twice, as a worker does, and the second run's
statements are counted with the rows they returned. A unit's task should read its own
rows: a statement returning about as many rows as the organization has relationships
or people reads every unit's data.

    python -m benchmarks.unit_reads --relationships 1000
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.org import NOW, RemoteOrg, Spec, build_org, write_workspace
from benchmarks.queue import POSTGRES


def profile(size: int, weeks: int) -> list[tuple[int, int, float, str]]:
    """Per statement of a unit's second task: how often, rows returned, seconds."""
    import psycopg
    from sqlalchemy import event

    from agent.core.retry import RetryPolicy
    from agent.settings import config
    from agent.tick.engine import Engine

    name = f"cadence_reads_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    spec = Spec(size, weeks=weeks)
    org = build_org(spec)
    stats: dict[str, list[Any]] = collections.defaultdict(lambda: [0, 0, 0.0])
    try:
        with tempfile.TemporaryDirectory(prefix="cadence-reads-") as tmp:
            work = Path(tmp)
            fake = RemoteOrg(spec, 0.0, work)
            try:
                ends = fake.endpoints()
                url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
                path = write_workspace(work, org, ends, 8, url)
                with Engine(config.load(path), retry=RetryPolicy.none()) as engine:
                    engine.tick(NOW)
                    fake.lapse(org.lapsing)
                    engine.tick(NOW + timedelta(minutes=10))
                partner = frozenset([org.pairs[0][1]])
                with Engine(config.load(path), retry=RetryPolicy.none()) as engine:
                    engine.tick(NOW + timedelta(minutes=20), units=partner, chores=False)

                    def before(conn: Any, *_: Any) -> None:
                        conn.info["t0"] = time.perf_counter()

                    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
                        s = stats[" ".join(statement.split())[:120]]
                        s[0] += 1
                        s[1] += max(cursor.rowcount, 0)
                        s[2] += time.perf_counter() - conn.info["t0"]

                    db = engine.store.db.engine
                    event.listen(db, "before_cursor_execute", before)
                    event.listen(db, "after_cursor_execute", after)
                    engine.tick(NOW + timedelta(minutes=30), units=partner, chores=False)
            finally:
                fake.close()
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return sorted(
        ((n, rows, sec, sql) for sql, (n, rows, sec) in stats.items()), key=lambda r: -r[1]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relationships", type=int, default=1000)
    parser.add_argument("--weeks", type=int, default=2, help="weeks of history")
    args = parser.parse_args(argv)
    found = profile(args.relationships, args.weeks)
    print(f"{'runs':>5} {'rows':>7} {'ms':>7}  statement")
    for n, rows, sec, sql in found:
        print(f"{n:5d} {rows:7d} {sec * 1000:7.1f}  {sql}")
    print(f"in all: {sum(r[0] for r in found)} statements, {sum(r[1] for r in found)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
