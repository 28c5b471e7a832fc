"""An LDAP directory or Active Directory, read through ldap3 with paged searches.

One read binds (a read-only account, or anonymously), searches ``base_dn`` for everyone
``filter`` selects in pages of ``page_size`` (RFC 2696: Active Directory answers at most
``MaxPageSize``, 1000, entries to a search that does not page), and, when ``members``
is set, searches again for the DNs of the members only, so the server evaluates
``memberOf`` and the filter as it defines them. Managers are DNs: an entry's ``ref`` is
its own DN and ``manager_ref`` its manager's, both in one normal form, and
``rules.directory.resolve`` turns them into addresses.

An unreachable server, a refused bind or a missing base DN fails the whole read with a
one-line message naming the server (never the password), so the sync keeps the last
read; an entry without a usable mail is logged and skipped.
"""

from __future__ import annotations

import math
import os
import re
import ssl
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

with warnings.catch_warnings():
    # ldap3 2.9 imports names pyasn1 0.6 has deprecated (tagMap, typeMap)
    warnings.filterwarnings("ignore", r"(tag|type)Map is deprecated", DeprecationWarning)
    import ldap3
    from ldap3.core import exceptions as lx
    from ldap3.utils.conv import escape_filter_chars

from agent.connectors.directory import DirectoryContext, Read
from agent.core import files
from agent.core.directory import Entry
from agent.core.errors import ConfigError, PermanentError, TransientError

_ADDRESS = re.compile(r"^[^@\s/\\]+@[^@\s/\\]+$")
_PAGED = "1.2.840.113556.1.4.319"
#: result codes worth another try: a time limit, busy, unavailable
_TRANSIENT = {3, 51, 52}


def read(source: Any, ctx: DirectoryContext, cursor: str | None = None) -> Read:
    password = _password(source, ctx.base)
    return ctx.retry.call(lambda: _Reader(source, ctx, password).read())


def _password(source: Any, base: Path) -> str | None:
    """The bind password, from the environment or a private file; never logged."""
    if source.password_env:
        value = os.environ.get(source.password_env, "")
        if not value:
            raise ConfigError(
                f"directory: the environment variable {source.password_env} (password_env) "
                "is not set; export it with the bind password before starting Cadence"
            )
        return value
    if source.password_file:
        path = base / os.path.expanduser(source.password_file)
        try:
            value = files.read_private(path, "directory: password_file").decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"directory: password_file {path} is not UTF-8 text") from None
        value = value.rstrip("\r\n")
        if not value:
            # an empty password is an anonymous bind on most servers: never send one
            raise ConfigError(f"directory: password_file {path} is empty")
        return value
    return None


class _VerifiedTls(ldap3.Tls):  # type: ignore[misc]
    """TLS that checks the certificate and the host name in the handshake, through the
    standard library (ldap3's own name check calls the deprecated ``ssl.match_hostname``)."""

    def __init__(self, ca_bundle: str | None) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_bundle)

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        context = ssl.create_default_context(cafile=self.ca_certs_file)
        connection.socket = context.wrap_socket(
            connection.socket,
            server_hostname=connection.server.host,
            do_handshake_on_connect=do_handshake,
        )


@dataclass
class _Reader:
    source: Any
    ctx: DirectoryContext
    password: str | None
    requests: int = 0
    where: str = field(init=False)
    _conn: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.where = f"ldap server {self.source.url}"

    def read(self) -> Read:
        conn = self._connect()
        try:
            a = self.source.attributes
            wanted = [x for x in (a.email, a.name, a.manager, a.language, a.timezone) if x]
            wanted += a.country
            found = list(self._search(self.source.filter, wanted))
            members = self._members() if self.source.members else None
        finally:
            with suppress(lx.LDAPException):
                conn.unbind()
        entries = []
        for dn, values in found:
            entry = self._entry(dn, values, members)
            if entry is not None:
                entries.append(entry)
        return Read(entries, full=True, requests=self.requests)

    # --- the connection -----------------------------------------------------------

    def _connect(self) -> ldap3.Connection:
        s = self.source
        url = urlsplit(s.url)
        secure = url.scheme == "ldaps"
        tls = None
        if secure or s.start_tls:
            bundle = None
            if s.ca_bundle:
                path = self.ctx.base / os.path.expanduser(s.ca_bundle)
                if not path.is_file():
                    raise ConfigError(f"directory: ca_bundle {path} does not exist")
                bundle = str(path)
            tls = _VerifiedTls(bundle)
        server = ldap3.Server(
            url.hostname,
            port=url.port,
            use_ssl=secure,
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=s.timeout,
        )
        self._conn = ldap3.Connection(
            server,
            user=s.bind_dn,
            password=self.password,
            authentication=ldap3.SIMPLE if s.bind_dn else ldap3.ANONYMOUS,
            read_only=True,
            receive_timeout=math.ceil(s.timeout),  # ldap3 packs it as whole seconds
            auto_referrals=False,
            auto_escape=False,
            return_empty_attributes=False,
            raise_exceptions=False,
        )
        conn = self._conn
        try:
            with self._failures("connect"):
                conn.open()
                if s.start_tls and not conn.start_tls():
                    raise PermanentError(f"{self.where}: StartTLS refused: {self._said(conn)}")
                self.requests += 1
                if not conn.bind():
                    raise self._refused(conn)
        except BaseException:
            with suppress(lx.LDAPException, OSError):
                conn.unbind()
            if conn.socket is not None:  # a socket that never connected stays open
                conn.socket.close()
            raise
        return conn

    def _refused(self, conn: ldap3.Connection) -> Exception:
        who = f"as {self.source.bind_dn}" if self.source.bind_dn else "anonymously"
        if conn.result.get("result") == 49:
            return PermanentError(
                f"{self.where}: bind {who} refused (invalid credentials); "
                "check bind_dn and the password"
            )
        return self._error(f"bind {who}", conn)

    def _failures(self, doing: str) -> AbstractContextManager[None]:
        return _translated(self.where, doing)

    # --- searches -----------------------------------------------------------------

    def _search(
        self, query: str, attributes: list[str]
    ) -> Iterator[tuple[str, dict[str, list[str]]]]:
        """Every entry under base_dn matching ``query``, page by page."""
        conn = self._conn
        cookie: bytes | None = None
        while True:
            self.requests += 1
            with self._failures("search"):
                conn.search(
                    self.source.base_dn,
                    query,
                    search_scope=ldap3.SUBTREE,
                    attributes=attributes,
                    paged_size=self.source.page_size,
                    paged_cookie=cookie,
                )
            result = conn.result
            if result.get("result") != 0:
                raise self._error("search", conn)
            for item in conn.response or []:
                if item.get("type") == "searchResEntry":
                    yield item["dn"], _decoded(item.get("raw_attributes") or {})
            control = (result.get("controls") or {}).get(_PAGED) or {}
            cookie = (control.get("value") or {}).get("cookie") or None
            if not cookie:
                return

    def _members(self) -> set[str]:
        m = self.source.members
        parts = [self.source.filter]
        if m.groups:
            tests = "".join(f"(memberOf={escape_filter_chars(g)})" for g in m.groups)
            parts.append(tests if len(m.groups) == 1 else f"(|{tests})")
        if m.filter:
            parts.append(m.filter)
        return {_dn_key(dn) for dn, _ in self._search(f"(&{''.join(parts)})", ["1.1"])}

    # --- entries ------------------------------------------------------------------

    def _entry(
        self, dn: str, values: dict[str, list[str]], members: set[str] | None
    ) -> Entry | None:
        a = self.source.attributes

        def first(attribute: str | None) -> str | None:
            for value in values.get(attribute.lower(), []) if attribute else []:
                if value.strip():
                    return value.strip()
            return None

        email = first(a.email)
        if not email or not _ADDRESS.match(email):
            self.ctx.log.warning("%s: %s has no usable %s; skipped", self.where, dn, a.email)
            return None
        key = _dn_key(dn)
        manager = first(a.manager)
        return Entry(
            email=email.lower(),
            name=first(a.name) or "",
            manager_ref=_dn_key(manager) if manager else None,
            ref=key,
            member=key in members if members is not None else True,
            country=_country([v for x in a.country for v in values.get(x.lower(), [])]),
            timezone=first(a.timezone),
            language=first(a.language),
        )

    # --- errors -------------------------------------------------------------------

    def _error(self, doing: str, conn: ldap3.Connection) -> Exception:
        code = conn.result.get("result")
        said = self._said(conn)
        if code == 32:
            return PermanentError(
                f"{self.where}: base_dn {self.source.base_dn} does not exist "
                "(or the account may not read it)"
            )
        if code in (4, 11):
            return PermanentError(
                f"{self.where}: {doing}: {said}; lower page_size to the server's limit "
                "(Active Directory: MaxPageSize, 1000)"
            )
        if code in _TRANSIENT:
            return TransientError(f"{self.where}: {doing}: {said}")
        return PermanentError(f"{self.where}: {doing}: {said}")

    @staticmethod
    def _said(conn: ldap3.Connection) -> str:
        r = conn.result or {}
        text = f"{r.get('description') or 'error'} ({r.get('result')})"
        message = " ".join(str(r.get("message") or "").split())
        return f"{text}: {message}" if message else text


@contextmanager
def _translated(where: str, doing: str) -> Iterator[None]:
    """ldap3's exceptions, as Cadence's: a failed connection may pass, a bad TLS setup
    or a protocol error will not."""
    try:
        yield
    except lx.LDAPException as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if "certificate" in text.lower() or isinstance(exc, lx.LDAPCertificateError):
            raise PermanentError(
                f"{where}: {doing}: the server's certificate is not trusted or does not name "
                "the host; set ca_bundle to the CA that issued it"
            ) from exc
        if isinstance(exc, lx.LDAPCommunicationError | lx.LDAPResponseTimeoutError):
            raise TransientError(f"{where}: {doing}: {_short(text)}") from exc
        raise PermanentError(f"{where}: {doing}: {_short(text)}") from exc


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decoded(raw: dict[str, list[bytes]]) -> dict[str, list[str]]:
    """Attribute values as text, by lower-case attribute name; binary values dropped."""
    out: dict[str, list[str]] = {}
    for name, blobs in raw.items():
        texts = []
        for blob in blobs:
            try:
                texts.append(blob.decode("utf-8"))
            except UnicodeDecodeError:
                continue
        out[name.lower()] = texts
    return out


_SEPARATOR = re.compile(r"(?<!\\)[,;]")


def _dn_key(dn: str) -> str:
    """A DN in one form for comparison: attribute names and values lower-case, no spaces
    around separators (as ``uid=Lea, ou=People`` and ``UID=lea,OU=people`` name one entry
    for the attributes people are named by)."""
    rdns = []
    for rdn in _SEPARATOR.split(dn.strip()):
        name, _, value = rdn.partition("=")
        rdns.append(f"{name.strip().lower()}={value.strip().lower()}")
    return ",".join(rdns)


def _country(values: list[str]) -> str | None:
    """An ISO 3166 two-letter code from the first value that names a country."""
    for value in values:
        text = value.strip()
        if len(text) == 2 and text.isalpha() and text.isascii():
            return text.upper()
        code = _countries().get(_squash(text))
        if code:
            return code
    return None


def _squash(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalpha())


@cache
def _countries() -> dict[str, str]:
    """English names and three-letter codes → two-letter codes, for the countries whose
    holidays Cadence knows (the only use of a country)."""
    try:
        from holidays.registry import COUNTRIES
    except ImportError:  # pragma: no cover - the registry moved
        return {}
    out: dict[str, str] = {}
    for module, (cls, alpha2, alpha3, *_) in COUNTRIES.items():
        for name in (module, cls, alpha3):
            out[_squash(name)] = alpha2
    return out
