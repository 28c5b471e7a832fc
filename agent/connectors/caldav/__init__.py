"""CalDAV calendars (RFC 4791) with SMTP mail: the ``caldav`` provider.

Each person's calendar is a collection URL, taken from ``calendar:`` in the person's
config or discovered from their principal (``calendar-home-set``, then the first
calendar that holds events). Requests go through the ``caldav`` library's client, with
the protocol steps spelled out here so that a quiet tick costs one request per calendar:

- ``changes``: a full sync reads the collection's ``sync-token`` (and ``getctag``) and
  runs one ``calendar-query`` over a horizon a little longer than the window; an
  incremental sync is one ``sync-collection`` REPORT (RFC 6578), or, where the server
  has no sync-collection, a ``getctag`` PROPFIND followed by an ETag listing when the
  ctag moved. Changed objects come in the sync reply or one ``calendar-multiget``.
  Recurring events are expanded on the client with recurring-ical-events.
- ``busy``: a ``free-busy-query`` REPORT per calendar where the server answers it,
  computed from the expanded events otherwise. The tick does not call it: it takes busy
  time from the events it synced (``busy_from_sync``), its one source within a tick.
- ``create``: ``PUT`` of ``<key>.ics`` with ``If-None-Match: *``; a 412 means the
  event exists (a retry after a crash) and it is read back instead. Every TZID gets a
  VTIMEZONE, the booking key rides along as ``X-CADENCE-KEY``, and attendees carry
  ``SCHEDULE-AGENT=CLIENT`` because Cadence mails the iTIP invitation itself
  (``sends_invitations`` is False), so servers with RFC 6638 scheduling don't send a
  second one.
- ``move``/``cancel``: only events carrying the agent's key, with ``If-Match`` on the
  ETag and SEQUENCE incremented.


HTTP outcomes are translated to Cadence errors in one place, :meth:`client.Transport._send`.
The modules, by capability: ``client`` (transport, discovery, reading objects), ``sync``,
``busy``, ``events`` (the agent's own), ``replies`` (answers read over IMAP) and ``ics``
(pure iCalendar helpers); ``calendar`` puts them together. With ``imap:`` and a
program that collects replies, the mailer also reads replies to recaps
(``agent.connectors.smtp.replying``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.connectors.base import Calendar, Mailer
from agent.connectors.caldav.calendar import CalDAVCalendar
from agent.connectors.caldav.client import make_client
from agent.connectors.caldav.replies import ReplyCollector
from agent.connectors.caldav.sync import HORIZON_SLACK
from agent.connectors.smtp import ImapReader, ImapReplyMailer, SmtpMailer, secret_from_env
from agent.core.errors import ConfigError

if TYPE_CHECKING:
    from agent.connectors import Context
    from agent.settings.config import CalDAVAccount


def connect(ctx: Context) -> tuple[Calendar, Mailer]:
    """Open the CalDAV calendar and the SMTP mailer of one ``caldav`` account."""
    account: CalDAVAccount = ctx.account
    where = f"account {ctx.name!r}"
    if account.smtp is None:
        raise ConfigError(f"{where}: smtp: is required to send agendas and invitations")
    password = secret_from_env(account.password_env, f"{where}: password_env")
    if account.username and password is None:
        raise ConfigError(f"{where}: username is set but password_env is not")
    client = make_client(
        account.url, account.username, password, account.auth, account.ca_bundle, account.timeout
    )
    people = ctx.settings.people
    calendar = CalDAVCalendar(
        client,
        calendars={e: p.calendar for e, p in people.items() if p.calendar},
        usernames={e: p.username for e, p in people.items() if p.username},
        account_username=account.username,
        retry=ctx.retry,
        log=ctx.log,
    )
    try:
        mailer = SmtpMailer.from_settings(
            account.smtp, where, ca_bundle=account.ca_bundle, retry=ctx.retry, log=ctx.log
        )
        collect = ctx.settings.collects_replies
        if account.imap is not None and account.imap.sent_folder:
            copies = ImapReader.from_settings(
                account.imap, where, ca_bundle=account.ca_bundle, retry=ctx.retry, log=ctx.log
            )
            mailer.copies = (copies, account.imap.sent_folder)
        if account.imap is not None and collect:
            reader = ImapReader.from_settings(
                account.imap, where, ca_bundle=account.ca_bundle, retry=ctx.retry, log=ctx.log
            )
            calendar.replies = ReplyCollector(
                reader, {p.email: p for p in ctx.settings.people.values()}, log=ctx.log
            )
        if account.imap is not None and ctx.name in ctx.settings.reply_accounts:
            # replies to recaps, read by the engine: a reader of its own (its own mark)
            recaps = ImapReader.from_settings(
                account.imap, where, ca_bundle=account.ca_bundle, retry=ctx.retry, log=ctx.log
            )
            return calendar, ImapReplyMailer(
                mailer, recaps, ctx.settings.reply_size_limit(ctx.name)
            )
    except BaseException:
        calendar.close()
        raise
    return calendar, mailer


__all__ = ["HORIZON_SLACK", "CalDAVCalendar", "ReplyCollector", "connect", "make_client"]
