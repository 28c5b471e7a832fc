"""Copy a whole store into an empty one: how an SQLite store moves to PostgreSQL (or
back). Both are brought to the newest schema first; every table is copied in key order,
in one transaction on the target, so a copy that fails leaves the target empty."""

from __future__ import annotations

from sqlalchemy import func, select, text

from agent.store import schema
from agent.store.broken import StoreError
from agent.store.sqlite import Store

#: rows read and written at a time
BATCH = 2000


def copy_store(source: Store, target: Store) -> dict[str, int]:
    """Copy every row of ``source`` into ``target``, which must hold none yet (but its
    own new ``meta``, which the source's replaces: its mail secret keeps Message-IDs);
    return the rows copied per table."""
    if source.version != target.version:
        raise StoreError(
            f"the stores have schema versions {source.version} and {target.version}: "
            "run `cadence store migrate` on the older one first"
        )
    used = [
        t.name
        for t in schema.metadata.sorted_tables
        if t.name != "meta" and target.db.run(select(func.count()).select_from(t)).rows[0][0]
    ]
    if used:
        raise StoreError(
            f"store {target.target.shown} is not empty (it has rows in {', '.join(used)}); "
            "copy into a new, empty store"
        )
    counts: dict[str, int] = {}
    with target.db.atomic():
        for table in schema.metadata.sorted_tables:
            if table.name == "meta":
                target.db.run(table.delete())
            order = list(table.primary_key.columns)
            done = 0
            rows = source.db.query(table.select().order_by(*order))
            for start in range(0, len(rows), BATCH):
                target.db.run(table.insert(), rows[start : start + BATCH])
            done = len(rows)
            counts[table.name] = done
            if target.backend == "postgresql" and "id" in table.c and order == [table.c.id]:
                # the next generated id follows the copied ones
                target.db.run(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table.name}), false)"
                    )
                )
    return counts
