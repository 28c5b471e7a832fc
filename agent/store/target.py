"""Where the store is: an SQLite file (a path, or ``sqlite:///path``) or a PostgreSQL
database (``postgresql+psycopg://user@host/db``), as the config's ``store:`` says.

A server's password is not written in the config: it comes from the environment
variable ``CADENCE_STORE_PASSWORD``, or from the file ``CADENCE_STORE_PASSWORD_FILE``
names, which must be private (mode 0600). A password left in the URL works, but the URL
is only ever shown with the password masked (``shown``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from agent.core.errors import ConfigError

PASSWORD_ENV = "CADENCE_STORE_PASSWORD"
PASSWORD_FILE_ENV = "CADENCE_STORE_PASSWORD_FILE"
SERVERS = ("postgresql",)


def is_url(value: str | Path) -> bool:
    return isinstance(value, str) and "://" in value


@dataclass(frozen=True)
class StoreTarget:
    #: the SQLite file (``None``: in memory, or a server)
    path: Path | None
    #: a server's URL with its password (never shown, never logged)
    url: str | None = None
    #: the store as messages name it: the path, or the URL with its password masked
    shown: str = ":memory:"

    @property
    def where(self) -> Path | str:
        """What ``broken.explain`` is given: the file, or the server's shown URL."""
        return self.path if self.path is not None else self.shown

    @classmethod
    def of(cls, value: Path | str | StoreTarget | None) -> StoreTarget:
        if isinstance(value, StoreTarget):
            return value
        if value is None or str(value) in (":memory:", "sqlite://"):
            return cls(None)
        if not is_url(value):
            return cls(Path(value), shown=str(value))
        text = str(value)
        try:
            url = make_url(text)
        except ArgumentError as exc:
            raise ConfigError(f"store: {exc}") from None
        backend = url.get_backend_name()
        if backend == "sqlite":
            if not url.database or url.database == ":memory:":
                return cls(None)
            return cls(Path(url.database), shown=url.database)
        if backend not in SERVERS:
            raise ConfigError(
                f"store: {backend} is not a store Cadence knows: give a file path, "
                "sqlite:///path or postgresql+psycopg://user@host/database"
            )
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        if url.password is None:
            secret = password()
            if secret is not None:
                url = url.set(password=secret)
        return cls(
            None,
            url.render_as_string(hide_password=False),
            url.render_as_string(hide_password=True),
        )


def password() -> str | None:
    """The server's password from the environment, or from a private file."""
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    name = os.environ.get(PASSWORD_FILE_ENV)
    if not name:
        return None
    path = Path(name)
    try:
        mode = path.stat().st_mode
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{PASSWORD_FILE_ENV}: cannot read {path}: {exc.strerror}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise ConfigError(
            f"{PASSWORD_FILE_ENV}: {path} can be read by others (mode "
            f"{stat.S_IMODE(mode):04o}): run chmod 600 {path}"
        )
    return secret
