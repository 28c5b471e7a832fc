"""What the revisions share: text compared as bytes, and tables written as column lists.

A revision, once released, must make the same tables for ever, or stores made before and
after it would differ. So this module only grows: change nothing it already makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

#: text compared as bytes on PostgreSQL too, as in ``agent.store.schema`` when written
STR = sa.Text().with_variant(sa.TEXT(collation="C"), "postgresql")


def column(spec: str) -> sa.Column[object]:
    """A column from its name: ``#`` after it makes an integer (else text), ``!`` NOT NULL,
    and ``=N`` a server default: ``moves#!=0``."""
    spec, _, default = spec.partition("=")
    name = spec.rstrip("!#")
    marks = spec[len(name) :]
    kind = sa.Integer() if "#" in marks else STR
    options: dict[str, Any] = {"server_default": sa.text(default)} if default else {}
    return sa.Column(name, kind, nullable="!" not in marks, **options)


def table(
    name: str,
    columns: str,
    *,
    key: Sequence[str],
    unique: Sequence[str] = (),
    autoincrement: bool = False,
) -> None:
    """Create ``name`` with its space-separated ``columns`` (see ``column``)."""
    parts: list[sa.schema.SchemaItem] = [column(spec) for spec in columns.split()]
    parts.append(sa.PrimaryKeyConstraint(*key))
    if unique:
        parts.append(sa.UniqueConstraint(*unique))
    options: dict[str, Any] = {"sqlite_autoincrement": True} if autoincrement else {}
    op.create_table(name, *parts, **options)


def index(name: str, on: str, *columns: str, where: str | None = None) -> None:
    """Create an index, partial on both backends when ``where`` is given."""
    condition: dict[str, Any] = {} if where is None else {
        "sqlite_where": sa.text(where), "postgresql_where": sa.text(where)
    }  # fmt: skip
    op.create_index(name, on, list(columns), **condition)
