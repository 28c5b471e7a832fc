"""Real servers for the CalDAV provider's tests: Radicale (CalDAV) and aiosmtpd (SMTP).

Both bind 127.0.0.1 on a port picked by the test, keep their data in a temporary
folder, and are stopped and closed on exit so that no socket or thread outlives a test.
Both have a random-fault mode for soak tests (``chaos``): the faults of real servers
under load, drawn from a seeded generator in the order requests arrive (the engine
syncs calendars in parallel, so a seed replays a storm only roughly).
"""

from __future__ import annotations

import email
import email.message
import email.policy
import imaplib
import io
import os
import random
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import radicale
import radicale.config
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.daemons import Daemon


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    aiosmtpd cannot be started on port 0 (its readiness probe connects to the port it
    was given), so the port is picked first.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- Radicale ---------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ[_SOCKET] = self.connection  # so that a fault can drop the connection
        return environ


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request, as Radicale's own server: an answer held back by a
    fault does not stall the client's retry. Closing the server joins the threads."""


_SOCKET = "cadence.test.socket"
#: the faults of ``Radicale.chaos`` and how often each is picked relative to the others;
#: a timeout costs the client its whole timeout of real time, so it is picked less often
CHAOS_KINDS = {
    "429": 3,  # throttled, with Retry-After
    "503": 3,  # unavailable, with Retry-After
    "500": 3,
    "502": 3,
    "lost": 3,  # applied, then answered 503
    "cut": 2,  # applied, then the connection closed without an answer
    "drop": 3,  # the connection closed without an answer, nothing applied
    "slow": 2,  # answered late, within the client's timeout
    "timeout": 1,  # applied, the answer held past the client's timeout, then closed
}
_STATUS = {
    "429": "429 Too Many Requests",
    "500": "500 Internal Server Error",
    "502": "502 Bad Gateway",
    "503": "503 Service Unavailable",
    "lost": "503 Service Unavailable",
}
#: what a throttled user is told to wait, in seconds of the soak's clock
RETRY_AFTER = 2


@dataclass
class Request:
    method: str
    path: str
    #: the XML root element name of a REPORT body, e.g. "sync-collection"
    report: str = ""


@dataclass
class Radicale:
    """A Radicale server running in-process on a thread.

    ``refuse`` names REPORTs the server pretends not to support (answered 403 with
    DAV:supported-report, as servers without them do) and ``hide`` live properties it
    pretends not to have, to exercise a client's fallbacks against the real storage.
    ``fail`` holds statuses to answer the next requests with, e.g. ``[(503, "7")]``.
    ``chaos`` faults a share of all requests at random.
    """

    folder: Path
    #: a server SSLContext: serve HTTPS instead of HTTP (``verify`` then names the CA)
    tls: ssl.SSLContext | None = None
    verify: str | bool = True
    refuse: set[str] = field(default_factory=set)
    hide: set[str] = field(default_factory=set)
    fail: list[tuple[int, str | None]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    #: random faults (see ``chaos``): what was injected, per kind
    chaos_rate: float = 0.0
    chaos_count: Counter[str] = field(default_factory=Counter)
    #: when each throttled user may come back (clock seconds), and who came back earlier
    throttled: dict[str, float] = field(default_factory=dict)
    early: list[str] = field(default_factory=list)
    #: how long a "timeout" fault holds the answer (longer than the client's timeout)
    hold: float = 1.0
    #: the added latency of a "slow" answer (shorter than the client's timeout)
    latency: float = 0.05
    _random: random.Random = field(default_factory=random.Random)
    _kinds: dict[str, int] = field(default_factory=dict)
    _clock: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: WSGIServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Radicale:
        conf = radicale.config.load([])
        conf.update(
            {
                # Radicale 3.9 defaults to denyall; set none explicitly, and let any
                # logged-in user reach every calendar, as a shared team server would.
                "auth": {"type": "none"},
                "rights": {"type": "authenticated"},
                # a scratch folder: no fsync, which costs a soak more than the server
                "storage": {"filesystem_folder": str(self.folder), "_filesystem_fsync": "False"},
                "logging": {"level": "warning", "mask_passwords": "True"},
            },
            "test",
            privileged=True,
        )
        app = radicale.Application(conf)
        self._server = make_server(
            "127.0.0.1",
            0,
            self._wrap(app),
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}/"
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
            self.url = f"https://localhost:{port}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None

    def __enter__(self) -> Radicale:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def chaos(self, rate: float, seed: int, clock: Any, kinds: Iterable[str] = CHAOS_KINDS) -> None:
        """Fault ``rate`` of all requests at random (``kinds``, weighted as in
        ``CHAOS_KINDS``).

        A 429 or 503 with Retry-After throttles the calendar's user (the first path
        segment) until ``clock.now() + RETRY_AFTER``; a request for that user before
        then is recorded in ``early``. Set ``chaos_rate`` to 0 to calm the server.
        """
        with self._lock:
            self.chaos_rate, self._random, self._clock = rate, random.Random(seed), clock
            self._kinds = {k: CHAOS_KINDS[k] for k in kinds}

    def _chaos(self, path: str) -> str | None:
        if self._clock is None:
            return None
        # a throttle outlives the storm: calls after calming down are checked too
        who = path.strip("/").split("/")[0]
        now = self._clock.now()
        if self.throttled.get(who, 0.0) > now:
            self.early.append(f"{who} {self.throttled[who] - now:.2f}s early")
        if not self.chaos_rate or self._random.random() >= self.chaos_rate:
            return None
        kind = self._random.choices(list(self._kinds), weights=list(self._kinds.values()))[0]
        self.chaos_count[kind] += 1
        if kind in ("429", "503"):
            self.throttled[who] = now + RETRY_AFTER
        return kind

    def _fault(
        self,
        kind: str,
        app: Callable[..., Iterable[bytes]],
        environ: dict[str, Any],
        start_response: Any,
    ) -> Iterable[bytes]:
        """Answer the request as fault ``kind`` does (``slow`` is handled by the caller)."""

        def applied() -> None:  # let Radicale do the request; its answer is thrown away
            result = app(environ, lambda status, headers, exc_info=None: None)
            try:
                for _ in result:
                    pass
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

        if kind in ("lost", "cut", "timeout"):
            applied()
        if kind == "timeout":
            time.sleep(self.hold)
        if kind in ("cut", "drop", "timeout"):
            # no answer at all: the client sees the connection close (wsgiref ignores
            # the broken pipe when it then writes the headers)
            environ[_SOCKET].shutdown(socket.SHUT_RDWR)
            start_response("500 Dropped", [("Content-Length", "0")])
            return []
        headers = [("Content-Type", "text/plain")]
        if kind in ("429", "503"):
            headers.append(("Retry-After", str(RETRY_AFTER)))
        start_response(_STATUS[kind], headers)
        return [b"injected fault\n"]

    def _wrap(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        def middleware(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            method = environ["REQUEST_METHOD"]
            body = b""
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length:
                body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            report = ""
            if method == "REPORT" and body:
                report = _root_name(body)
            path = environ.get("PATH_INFO", "")
            with self._lock:
                self.requests.append(Request(method, path, report))
                fault = self._chaos(path)
            if fault == "slow":
                time.sleep(self.latency)
            elif fault is not None:
                return self._fault(fault, app, environ, start_response)
            if self.fail:
                status, retry_after = self.fail.pop(0)
                headers = [("Content-Type", "text/plain")]
                if retry_after is not None:
                    headers.append(("Retry-After", retry_after))
                start_response(f"{status} Injected", headers)
                return [b"injected failure\n"]
            if report and report in self.refuse:
                start_response(
                    "403 Forbidden", [("Content-Type", "application/xml; charset=utf-8")]
                )
                return [
                    b'<?xml version="1.0" encoding="utf-8"?>\n'
                    b'<D:error xmlns:D="DAV:"><D:supported-report/></D:error>'
                ]
            if method == "PROPFIND" and self.hide:
                for name in self.hide:
                    body = body.replace(f"<{name}".encode(), b"<hidden-" + name.encode())
                    body = body.replace(f":{name}".encode(), b":hidden-" + name.encode())
                environ["wsgi.input"] = io.BytesIO(body)
                environ["CONTENT_LENGTH"] = str(len(body))
            return app(environ, start_response)

        return middleware

    def count(self, method: str | None = None, report: str | None = None) -> int:
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method) and (report is None or r.report == report)
        )

    def calendar_url(self, user: str, name: str = "calendar") -> str:
        return f"{self.url}{user}/{name}/"

    def make_calendar(self, user: str, name: str = "calendar") -> str:
        """Create a calendar collection for ``user`` over HTTP; return its URL."""
        import niquests

        url = self.calendar_url(user, name)
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            "<D:set><D:prop><D:displayname>"
            f"{name}"
            "</D:displayname><C:supported-calendar-component-set>"
            '<C:comp name="VEVENT"/></C:supported-calendar-component-set>'
            "</D:prop></D:set></C:mkcalendar>"
        )
        with niquests.Session() as s:
            s.verify = self.verify
            r = s.request("MKCALENDAR", url, data=body.encode(), auth=(user, "x"))
            if r.status_code != 201:
                raise RuntimeError(f"MKCALENDAR {url}: {r.status_code} {r.text}")
        return url

    def put(self, url: str, ics: str, user: str = "someone") -> None:
        """Store an iCalendar object the way another client would."""
        import niquests

        with niquests.Session() as s:
            s.verify = self.verify
            r = s.put(
                url,
                data=ics.encode(),
                headers={"Content-Type": "text/calendar; charset=utf-8"},
                auth=(user, "x"),
            )
            if r.status_code not in (201, 204):
                raise RuntimeError(f"PUT {url}: {r.status_code} {r.text}")

    def get(self, url: str, user: str = "someone") -> str | None:
        import niquests

        with niquests.Session() as s:
            s.verify = self.verify
            r = s.get(url, auth=(user, "x"))
            if r.status_code == 404:
                return None
            r.raise_for_status()
            return str(r.text)

    def delete(self, url: str, user: str = "someone") -> None:
        import niquests

        with niquests.Session() as s:
            s.verify = self.verify
            r = s.delete(url, auth=(user, "x"))
            if r.status_code not in (200, 204):
                raise RuntimeError(f"DELETE {url}: {r.status_code}")


def _root_name(body: bytes) -> str:
    from xml.etree import ElementTree

    try:
        tag = ElementTree.fromstring(body).tag
    except ElementTree.ParseError:
        return ""
    return tag.rsplit("}", 1)[-1]


# --- aiosmtpd -----------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage
    raw: bytes
    login: str | None


#: the faults of ``SmtpSink.chaos``: what the client sees, and whether the message is kept
SMTP_CHAOS_KINDS = (
    "421",  # MAIL FROM answered "421 try again later" (nothing kept)
    "451",  # the end of DATA answered "451 local error" (nothing kept)
    "drop",  # the connection closed at the end of DATA, before the 250 (nothing kept)
    "lost",  # the message kept, then the connection closed before the 250
)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink
        #: the fault picked for each session's current transaction
        self.faults: dict[int, str] = {}

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.faults.pop(id(session), None)  # a transaction abandoned before DATA
        fault = self.sink.chaos_fault()
        if fault == "421":
            return "421 4.3.2 Service busy, try again later"
        if fault is not None:
            self.faults[id(session)] = fault
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self.faults.pop(id(session), None)
        if fault == "451":
            return "451 4.3.0 Local error in processing, try again"
        if fault != "drop":
            self._keep(session, envelope)
        if fault in ("drop", "lost"):
            assert server.transport is not None
            server.transport.abort()  # the client never reads the 250
        return "250 OK"

    def _keep(self, session: Session, envelope: Envelope) -> None:
        raw = bytes(envelope.original_content or b"")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        self.sink.received.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=message,
                raw=raw,
                login=login,
            )
        )


@dataclass
class SmtpSink:
    """An aiosmtpd server that keeps every message it accepts.

    ``tls`` is a server SSLContext: with ``implicit`` the socket is TLS from the start
    (port 465 style), otherwise STARTTLS is offered (and required when ``credentials``
    are set, as real submission servers do). ``chaos`` faults a share of all
    transactions at random.
    """

    tls: ssl.SSLContext | None = None
    implicit: bool = False
    credentials: tuple[str, str] | None = None
    received: list[Received] = field(default_factory=list)
    port: int = 0
    #: random faults (see ``chaos``): what was injected, per kind
    chaos_rate: float = 0.0
    chaos_count: Counter[str] = field(default_factory=Counter)
    transactions: int = 0
    _random: random.Random = field(default_factory=random.Random)
    _kinds: tuple[str, ...] = SMTP_CHAOS_KINDS
    _controller: Controller | None = None

    def chaos(self, rate: float, seed: int, kinds: Iterable[str] = SMTP_CHAOS_KINDS) -> None:
        """Fault ``rate`` of all mail transactions at random (``kinds``).

        "drop" and "lost" look the same to the client (no answer to the end of DATA),
        but only "lost" keeps the message: a client cannot tell whether it went out.
        Set ``chaos_rate`` to 0 to calm the server.
        """
        self.chaos_rate, self._random, self._kinds = rate, random.Random(seed), tuple(kinds)

    def chaos_fault(self) -> str | None:
        """Pick the fault of one transaction (called by the server's event loop only)."""
        self.transactions += 1
        if not self.chaos_rate or self._random.random() >= self.chaos_rate:
            return None
        kind = self._random.choice(self._kinds)
        self.chaos_count[kind] += 1
        return kind

    def start(self) -> SmtpSink:
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if self.tls is not None and self.implicit:
            kwargs["ssl_context"] = self.tls
        elif self.tls is not None:
            kwargs["tls_context"] = self.tls
            kwargs["require_starttls"] = True
        if self.credentials is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = self.tls is not None
        self._controller = Controller(
            _Handler(self),
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="localhost",
            ready_timeout=5,
            **kwargs,
        )
        self._controller.start()
        return self

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and self.credentials is not None
            and (data.login.decode(), data.password.decode()) == self.credentials
        )
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def messages(self) -> list[email.message.EmailMessage]:
        return [r.message for r in self.received]


@contextmanager
def tls_pair(folder: Path) -> Iterator[tuple[ssl.SSLContext, Path]]:
    """Yield a server SSLContext for 127.0.0.1/localhost and the CA bundle trusting it."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    bundle = folder / f"ca-{uuid.uuid4().hex[:8]}.pem"
    ca.cert_pem.write_to_path(str(bundle))
    yield server, bundle


# --- what other clients put on a calendar ---------------------------------------------


def client_ics(
    uid: str,
    title: str,
    start: datetime | date,
    end: datetime | date,
    *,
    attendees: Iterable[str] = (),
    organizer: str | None = None,
    rrule: str | None = None,
    transparent: bool = False,
    extra: Iterable[str] = (),
) -> str:
    """Return an iCalendar object as a calendar client would store it (with VTIMEZONE)."""
    import icalendar

    cal = icalendar.Calendar()
    cal.add("PRODID", "-//Test Client//EN")
    cal.add("VERSION", "2.0")
    event = icalendar.Event()
    event.add("UID", uid)
    event.add("DTSTAMP", datetime(2026, 1, 1, tzinfo=UTC))
    event.add("DTSTART", start)
    event.add("DTEND", end)
    event.add("SUMMARY", title)
    if organizer:
        event.add("ORGANIZER", f"mailto:{organizer}")
    for a in attendees:
        event.add("ATTENDEE", f"mailto:{a}", parameters={"PARTSTAT": "ACCEPTED"})
    if rrule:
        event.add("RRULE", icalendar.vRecur.from_ical(rrule))
    if transparent:
        event.add("TRANSP", "TRANSPARENT")
    cal.add_component(event)
    text = cal.to_ical().decode()
    if extra:
        text = text.replace("END:VEVENT", "\r\n".join([*extra, "END:VEVENT"]))
    cal = icalendar.Calendar.from_ical(text)
    # a short span: Radicale misreads icalendar's default 1970-2038 VTIMEZONE
    year = start.year
    cal.add_missing_timezones(first_date=date(year - 1, 1, 1), last_date=date(year + 3, 1, 1))
    return str(cal.to_ical().decode())


# --- Dovecot (IMAP) -----------------------------------------------------------------------


DOVECOT = shutil.which("dovecot") or (
    "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
)


@dataclass
class Dovecot(Daemon):
    """A Dovecot IMAP server from the Debian package, run in the foreground by the test.

    One user (``credentials``) with a Maildir in a temporary folder; plain IMAP on the
    loopback interface, or IMAPS only when ``tls`` (cert and key PEM paths) is given.
    Mail runs under the ``nobody`` account when the tests run as root (Dovecot refuses
    uid 0 for mail), else under the current user.
    """

    credentials: tuple[str, str] = ("cadence", "imap-secret")
    tls: tuple[Path, Path] | None = None
    port: int = 0
    home: Path | None = None
    _process: subprocess.Popen[bytes] | None = None

    def start(self) -> Dovecot:
        if DOVECOT is None:
            raise RuntimeError("dovecot is not installed (Debian: apt-get install dovecot-imapd)")
        self.home = Path(tempfile.mkdtemp(prefix="cadence-dovecot-"))
        self.home.chmod(0o755)
        mail = self.home / "mail"
        mail.mkdir()
        uid, gid = os.getuid(), os.getgid()
        if uid == 0:
            uid = gid = 65534
            os.chown(mail, uid, gid)
        user, password = self.credentials
        (self.home / "users").write_text(f"{user}:{{PLAIN}}{password}\n")
        self.port = free_port()
        if self.tls is None:
            listeners = (
                f"inet_listener imap {{\n    address = 127.0.0.1\n    port = {self.port}\n  }}\n"
                "  inet_listener imaps {\n    port = 0\n  }"
            )
            ssl_settings = "ssl = no\ndisable_plaintext_auth = no"
        else:
            listeners = (
                "inet_listener imap {\n    port = 0\n  }\n"
                f"  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {self.port}\n"
                "    ssl = yes\n  }"
            )
            cert, key = self.tls
            ssl_settings = f"ssl = required\nssl_cert = <{cert}\nssl_key = <{key}"
        (self.home / "dovecot.conf").write_text(
            f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {self.home}/run
state_dir = {self.home}/state
log_path = {self.home}/dovecot.log
{ssl_settings}
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = 1
mail_location = maildir:{mail}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.home}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%u
}}
service imap-login {{
  chroot =
  {listeners}
}}
service anvil {{
  chroot =
}}
"""
        )
        self._process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.home / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    log = (self.home / "dovecot.log").read_text(errors="replace")
                    self.stop()
                    raise RuntimeError(f"dovecot did not start: {log}") from None
                time.sleep(0.05)

    def _client(self) -> imaplib.IMAP4:
        if self.tls is not None:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            client: imaplib.IMAP4 = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=context)
        else:
            client = imaplib.IMAP4("127.0.0.1", self.port)
        client.login(*self.credentials)
        return client

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        """Put a message into a folder, as the mail server would on delivery."""
        client = self._client()
        try:
            if folder != "INBOX":
                client.create(folder)
            status, data = client.append(folder, None, None, raw)
            if status != "OK":
                raise RuntimeError(f"APPEND failed: {data!r}")
        finally:
            client.logout()

    def flags(self, folder: str = "INBOX") -> list[bytes]:
        client = self._client()
        try:
            client.select(folder, readonly=True)
            _, data = client.fetch("1:*", "(FLAGS)")
            return [d for d in data if isinstance(d, bytes)]
        finally:
            client.logout()


def tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """Write a certificate for 127.0.0.1/localhost, its key and the CA; return their paths."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    paths = (folder / "server.pem", folder / "server.key", folder / "ca.pem")
    with paths[0].open("wb") as f:
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())
    cert.private_key_pem.write_to_path(str(paths[1]))
    ca.cert_pem.write_to_path(str(paths[2]))
    return paths
