"""A real OpenLDAP ``slapd`` (Debian's package) run in the foreground by the tests.

Its own configuration in a temporary folder (``slapd -f``): an mdb database for
``dc=acme,dc=example``, the ``memberof`` overlay (so ``memberOf`` is kept by the server as
Active Directory keeps it), a read-only service account that is the only one allowed to
read the attributes Cadence reads and nothing else, and a size limit like Active Directory's ``MaxPageSize``: a search that
does not page gets at most ``page_limit`` entries. ``stats`` logging goes to a file, so a
test can count the searches and pages the server answered.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.daemons import Daemon

SLAPD = shutil.which("slapd") or ("/usr/sbin/slapd" if Path("/usr/sbin/slapd").exists() else None)
LDAPADD = shutil.which("ldapadd")
SCHEMAS = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")
MISSING = (
    None
    if SLAPD and LDAPADD and (MODULES / "memberof.la").exists()
    else "OpenLDAP is not installed (Debian: apt-get install slapd ldap-utils)"
)

SUFFIX = "dc=acme,dc=example"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret"
#: the least-privilege account Cadence binds as: it may read people, and write nothing
READER_DN = f"cn=cadence,ou=services,{SUFFIX}"
READER_PASSWORD = "reader-secret"
GROUP_DN = f"cn=development,ou=groups,{SUFFIX}"
#: all the reader may see: what docs/directory.md grants (and the test schema's time zone)
READ = (
    "entry", "objectClass", "mail", "displayName", "manager", "c", "co",
    "preferredLanguage", "memberOf", "acmeTimeZone",
)  # fmt: skip

#: a time zone attribute, as a company that keeps one extends its schema
_SCHEMA = """\
attributetype ( 1.3.6.1.4.1.4203.666.11.9001.1 NAME 'acmeTimeZone'
  DESC 'IANA time zone name' EQUALITY caseIgnoreMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.4203.666.11.9001.2 NAME 'acmePerson' SUP top AUXILIARY
  MAY ( acmeTimeZone $ c $ co ) )
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def person(
    uid: str,
    name: str,
    *,
    ou: str = "people",
    manager: str | None = None,
    mail: str | None = "",
    country: str | None = "DE",
    zone: str | None = "Europe/Berlin",
    language: str | None = None,
) -> str:
    """One person's LDIF record; ``mail=""`` gives ``uid@acme.example``, None no mail."""
    lines = [
        f"dn: uid={uid},ou={ou},{SUFFIX}",
        "objectClass: inetOrgPerson",
        "objectClass: acmePerson",
        f"uid: {uid}",
        f"cn: {name}",
        f"sn: {name.split()[-1]}",
        _value("displayName", name),
    ]
    if mail is not None:
        lines.append(f"mail: {mail or uid + '@acme.example'}")
    if manager:
        lines.append(f"manager: {manager}")
    if country:
        lines.append(f"c: {country}")
    if zone:
        lines.append(f"acmeTimeZone: {zone}")
    if language:
        lines.append(f"preferredLanguage: {language}")
    return "\n".join(lines) + "\n"


def group(dn: str, members: list[str]) -> str:
    cn = dn.split(",")[0].split("=")[1]
    lines = [f"dn: {dn}", "objectClass: groupOfNames", f"cn: {cn}"]
    lines += [f"member: {m}" for m in members]
    return "\n".join(lines) + "\n"


def _value(attribute: str, value: str) -> str:
    """An LDIF line, base64 when the value is not plain ASCII (RFC 2849)."""
    import base64

    if value.isascii():
        return f"{attribute}: {value}"
    return f"{attribute}:: {base64.b64encode(value.encode()).decode()}"


def dn(uid: str, ou: str = "people") -> str:
    return f"uid={uid},ou={ou},{SUFFIX}"


@dataclass
class Slapd(Daemon):
    """slapd on 127.0.0.1 at a free port; ``ldaps_port`` too (on 127.0.0.1 and
    127.0.0.2) when ``tls`` is given."""

    #: entries a search that does not page may return (Active Directory's MaxPageSize)
    page_limit: int = 4
    #: (certificate chain, key) PEM paths for ldaps:// and StartTLS
    tls: tuple[Path, Path] | None = None
    port: int = 0
    ldaps_port: int = 0
    home: Path | None = None
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def start(self) -> Slapd:
        if MISSING:
            raise RuntimeError(MISSING)
        self.home = home = Path(tempfile.mkdtemp(prefix="cadence-slapd-"))
        (home / "db").mkdir()
        (home / "acme.schema").write_text(_SCHEMA)
        tls = ""
        if self.tls:
            cert, key = self.tls
            tls = f"TLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\n"
        (home / "slapd.conf").write_text(
            f"""\
include {SCHEMAS}/core.schema
include {SCHEMAS}/cosine.schema
include {SCHEMAS}/inetorgperson.schema
include {home}/acme.schema
pidfile {home}/slapd.pid
argsfile {home}/slapd.args
modulepath {MODULES}
moduleload back_mdb.la
moduleload memberof.la
{tls}
database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {home}/db
limits users size.soft={self.page_limit} size.hard={self.page_limit} size.pr={self.page_limit} size.prtotal=unlimited
overlay memberof
access to attrs=userPassword
  by anonymous auth
  by * none
access to dn.subtree="ou=people,{SUFFIX}" attrs={",".join(READ)}
  by dn.exact="{READER_DN}" read
  by * none
access to *
  by * none
"""
        )
        self.port = free_port()
        urls = [self.url]
        if self.tls:
            self.ldaps_port = free_port()
            # and on another loopback address, which the test certificate does not name
            urls += [f"ldaps://127.0.0.{n}:{self.ldaps_port}" for n in (1, 2)]
        with (home / "slapd.log").open("wb") as log:
            self._process = subprocess.Popen(
                [SLAPD, "-f", str(home / "slapd.conf"), "-h", " ".join(urls), "-d", "stats"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    text = self.log()
                    self.stop()
                    raise RuntimeError(f"slapd did not start: {text[-2000:]}") from None
                time.sleep(0.05)
        self.add(
            f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: acme\no: Acme\n",
            *(
                f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n"
                for ou in ("people", "services", "groups", "former")
            ),
            f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
            f"cn: cadence\nuserPassword: {READER_PASSWORD}\n",
        )
        return self

    def add(self, *records: str) -> None:
        """Add LDIF records as the administrator, through the server (so memberOf is kept)."""
        self._ldap("ldapadd", "\n".join(records))

    def load(self, path: Path) -> None:
        self._ldap("ldapadd", path.read_text(encoding="utf-8"))

    def modify(self, ldif: str) -> None:
        self._ldap("ldapmodify", ldif)

    def _ldap(self, tool: str, ldif: str) -> None:
        command = [tool, "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PASSWORD]
        done = subprocess.run(command, input=ldif.encode(), capture_output=True, check=False)
        if done.returncode:
            raise RuntimeError(f"{tool}: {done.stderr.decode(errors='replace')}\n{ldif}")

    def log(self) -> str:
        assert self.home is not None, "slapd is not running"
        return (self.home / "slapd.log").read_text(errors="replace")

    def searches(self, base: str = SUFFIX) -> list[str]:
        """The searches of ``base`` the server received, one log line each (one per page)."""
        return [line for line in self.log().splitlines() if f'SRCH base="{base}"' in line]
