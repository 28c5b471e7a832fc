"""Exchange Server on premises through EWS, with exchangelib.

One exchangelib ``Account`` per person, all sharing one ``Protocol`` (one endpoint, one
service account): ``autodiscover=False`` and the configured ``service_endpoint``, NTLM,
basic or OAuth (a bearer token) credentials, impersonation (``access_type:
impersonation``, the ApplicationImpersonation role) or delegate access (a single person,
or a service account with delegate rights on each mailbox).

What it calls:

- ``changes()``: ``FindItem`` with a ``CalendarView`` over an anchored window asking for
  ids and change keys only (one request when nothing changed), then ``GetItem`` for the
  items that are new or changed. The cursor keeps the id → change key map of the view;
  see :func:`items.diff` for why this and not ``SyncFolderItems``.
- ``busy()``: ``GetUserAvailability`` through ``Protocol.get_free_busy_info``, 100
  mailboxes and 42 days per call, in UTC.
- ``create()``: ``CreateItem`` of a ``CalendarItem`` with both people and
  ``SendMeetingInvitations=SendToAllAndSaveCopy``, tagged with an extended property that
  holds the booking key; ``find()`` (``FindItem`` restricted on that property) runs first,
  so a retry never makes a second meeting. EWS has no idempotency token of its own.
- ``move()``/``cancel()``: ``UpdateItem``/``DeleteItem`` of the agent's own items only,
  with updates or cancellations sent to the attendees.
- mail: ``CreateItem`` of a ``Message`` from MIME (``send_and_save``), so Message-ID,
  In-Reply-To and References are ours and a recap threads to its agenda.

- notifications: a pull subscription per calendar (``Subscribe``), asked with
  ``GetEvents`` from the last watermark, ended with ``Unsubscribe`` (see :mod:`notify`);
  or a streaming subscription per calendar, its changes read from one
  ``GetStreamingEvents`` connection per group of calendars (see :mod:`stream`).

exchangelib's errors are translated in one place, :meth:`client.Ews.call`. The modules, by
capability: ``client`` (connection, error translation), ``items`` (the tag, times, events,
the cursor), ``calendar``, ``notify``, ``stream`` and ``mail``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.connectors.exchange.calendar import ExchangeCalendar
from agent.connectors.exchange.client import Ews, ca_file, translate
from agent.connectors.exchange.items import KEY_NAME, KEY_SET, CadenceKey
from agent.connectors.exchange.mail import ExchangeMailer
from agent.connectors.exchange.replies import ExchangeReplyMailer

if TYPE_CHECKING:
    from agent.connectors import Context, FileCheck
    from agent.settings.config import ExchangeAccount


def file_checks(ctx: Context) -> list[FileCheck]:
    """The checks ``connect`` makes of the account's files, for ``cadence check``."""
    return [("ca_bundle", lambda: ca_file(ctx.account, ctx.settings.resolve))]


def connect(ctx: Context) -> tuple[ExchangeCalendar, ExchangeMailer]:
    """Open the EWS connection of one account, shared by its calendar and mailer; the
    mailer reads replies too where a program on the account collects them."""
    account: ExchangeAccount = ctx.account
    ews = Ews(account, ctx.settings.resolve, ctx.retry)
    calendar = ExchangeCalendar(ews, ctx.people)
    if not ctx.reply_mailboxes:
        return calendar, ExchangeMailer(ews)
    limit = ctx.settings.reply_size_limit(ctx.name)
    return calendar, ExchangeReplyMailer(ews, ctx.reply_mailboxes, ctx.correspondents, limit)


__all__ = [
    "KEY_NAME",
    "KEY_SET",
    "CadenceKey",
    "Ews",
    "ExchangeCalendar",
    "ExchangeMailer",
    "ExchangeReplyMailer",
    "connect",
    "translate",
]
