"""One connection to the store's database, SQLite or PostgreSQL, through SQLAlchemy Core.

The store's queries are SQL both backends read alike, with ``?`` for each value; the
writes that differ between them (upserts, inserts that skip a row already there) are
built here from the tables in ``agent.store.schema``. A statement outside ``atomic``
runs in a transaction of its own, so a reader never keeps an old snapshot open.

The driver's own exception comes out, not SQLAlchemy's wrapper: ``broken.explain`` and
the CLI tell a full disk or a read-only file from SQLite's message as before.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table, TextClause, create_engine, event, exc, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.dml import UpdateBase

from agent.store import schema

_MARK = re.compile(r"'[^']*'|\?")


@functools.lru_cache(maxsize=1024)
def _clause(sql: str) -> TextClause:
    """``sql`` with its ``?`` marks (outside quoted text) as named binds ``:p0``...;
    made once per statement text (SQLAlchemy then caches its compiled form too)."""
    names = itertools.count()

    def mark(m: re.Match[str]) -> str:
        return m.group(0) if m.group(0) != "?" else f":p{next(names)}"

    return text(_MARK.sub(mark, sql))


def _bind(sql: str, params: Sequence[Any]) -> tuple[TextClause, dict[str, Any]]:
    return _clause(sql), {f"p{i}": v for i, v in enumerate(params)}


class Done:
    """What a statement gave back, read before its transaction ended."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)


def sqlite_engine(path: str | None) -> Engine:
    """An engine on one SQLite file (``None``: in memory) whose transactions Cadence
    begins itself: pysqlite's own would begin them late and never for a savepoint."""
    url = "sqlite://" if path is None else f"sqlite:///{path}"
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop("immediate", False) else "BEGIN")

    return engine


def server_engine(url: str) -> Engine:
    """An engine on a database server (PostgreSQL); one connection per store."""
    return create_engine(url, poolclass=NullPool)


class Database:
    """The store's one connection, with the few helpers its queries need."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name = engine.dialect.name
        self.conn = self._connect()
        self._depth = 0
        #: called in every transaction that wrote, before it commits (see ``Store``)
        self.on_write: Callable[[], None] | None = None
        self._dirty = False

    def _connect(self) -> Connection:
        try:
            return self.engine.connect()
        except exc.DBAPIError as error:
            raise error.orig from error  # type: ignore[misc]

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextlib.contextmanager
    def atomic(self, immediate: bool = False) -> Iterator[Database]:
        """One transaction; nested ones are savepoints. ``immediate`` takes SQLite's
        write lock at once (for a migration that must look, then write)."""
        try:
            if self._depth:
                tx: Any = self.conn.begin_nested()
            else:
                self.conn.info["immediate"] = immediate
                tx = self.conn.begin()
        except exc.DBAPIError as error:
            self.conn.info.pop("immediate", None)
            raise error.orig from error  # type: ignore[misc]
        self._depth += 1
        try:
            yield self
            if self._depth == 1:
                self._wrote()
        except BaseException:
            self._depth -= 1
            if not self._depth:
                self._dirty = False
            if tx.is_active:
                with contextlib.suppress(exc.DBAPIError):
                    tx.rollback()
            raise
        self._depth -= 1
        try:
            tx.commit()
        except exc.DBAPIError as error:
            if tx.is_active:
                with contextlib.suppress(exc.DBAPIError):
                    tx.rollback()
            raise error.orig from error  # type: ignore[misc]

    def run(self, statement: Any, params: Any = None) -> Done:
        """Execute a Core statement, in a transaction of its own unless one is open."""
        if not self._depth:
            with self.atomic():
                return self.run(statement, params)
        self._dirty = self._dirty or _writes(statement)
        try:
            return _done(self.conn.execute(statement, params))
        except exc.DBAPIError as error:
            raise error.orig from error  # type: ignore[misc]

    def _wrote(self) -> None:
        """Tell ``on_write`` of the transaction about to commit, if it wrote."""
        if self._dirty and self.on_write is not None:
            hook, self.on_write = self.on_write, None  # its own write does not count
            try:
                hook()
            finally:
                self.on_write = hook
        self._dirty = False

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Done:
        """Run SQL with ``?`` marks; its rows come back as tuples."""
        statement, binds = _bind(sql, params)
        return self.run(statement, binds)

    def query(self, sql: str | Any, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The rows of a query (SQL with ``?`` marks, or a Core select), each as a dict
        by column name."""
        statement, binds = _bind(sql, params) if isinstance(sql, str) else (sql, None)
        try:
            if self._depth:
                result = self.conn.execute(statement, binds).mappings().all()
            else:
                with self.conn.begin():
                    result = self.conn.execute(statement, binds).mappings().all()
        except exc.DBAPIError as error:
            raise error.orig from error  # type: ignore[misc]
        return [dict(r) for r in result]

    def pragma(self, sql: str) -> Any:
        """Run an SQLite PRAGMA outside any transaction (``journal_mode`` must)."""
        raw = self.conn.connection.driver_connection
        return raw.execute(sql).fetchall()  # type: ignore[union-attr]

    def table(self, name: str) -> Rows:
        return Rows(self, schema.metadata.tables[name])

    def insert(self, table: Table) -> Any:
        """The dialect's INSERT, which knows ``on_conflict_do_*``."""
        return (postgresql.insert if self.name == "postgresql" else sqlite.insert)(table)


def _writes(statement: Any) -> bool:
    if isinstance(statement, UpdateBase):
        return True
    if isinstance(statement, TextClause):
        return _writing(statement.text)
    return False


@functools.lru_cache(maxsize=1024)
def _writing(sql: str) -> bool:
    return sql.lstrip()[:7].upper().startswith(("INSERT", "UPDATE", "DELETE"))


def _done(result: Any) -> Done:
    rows = [tuple(r) for r in result.all()] if result.returns_rows else []
    return Done(rows, result.rowcount if not result.returns_rows else len(rows))


class Rows:
    """Writes to one table by its primary key, as the store makes them."""

    def __init__(self, db: Database, table: Table) -> None:
        self.db = db
        self.table = table
        self.keys = [c.name for c in table.primary_key.columns]

    def _known(self, row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k in self.table.c}

    def upsert(self, row: dict[str, Any], pk: Any = None, *, keys: Sequence[str] = ()) -> None:
        self.upsert_all([row], keys=keys)

    def upsert_all(
        self, rows: Sequence[dict[str, Any]], pk: Any = None, *, keys: Sequence[str] = ()
    ) -> None:
        """Insert each row, or update the columns it names where its key is already
        there (the columns it leaves out keep their values)."""
        keys = list(keys) or self.keys
        by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            known = self._known(row)
            by_shape.setdefault(tuple(known), []).append(known)
        for shape, group in by_shape.items():
            statement = self.db.insert(self.table)
            update = {c: statement.excluded[c] for c in shape if c not in keys}
            if update:
                statement = statement.on_conflict_do_update(index_elements=keys, set_=update)
            else:
                statement = statement.on_conflict_do_nothing(index_elements=keys)
            self.db.run(statement, group)

    def insert(self, row: dict[str, Any]) -> int | None:
        """Insert one row; return its generated id, if the table has one."""
        statement = self.table.insert().values(self._known(row))
        if "id" in self.table.c and self.keys == ["id"]:
            return int(self.db.run(statement.returning(self.table.c.id)).rows[0][0])
        self.db.run(statement)
        return None

    def insert_all(self, rows: Sequence[dict[str, Any]], *, ignore: bool = False) -> None:
        """Insert rows; with ``ignore``, skip those whose key is already there."""
        if not rows:
            return
        statement = self.db.insert(self.table)
        if ignore:
            statement = statement.on_conflict_do_nothing(index_elements=self.keys)
        self.db.run(statement, [self._known(r) for r in rows])

    def update(self, ident: Any, row: dict[str, Any]) -> None:
        """Update the row whose one-column key is ``ident``."""
        (key,) = self.keys
        values = {k: v for k, v in self._known(row).items() if k != key}
        self.db.run(self.table.update().where(self.table.c[key] == ident).values(values))
