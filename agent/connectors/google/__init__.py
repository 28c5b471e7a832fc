"""Google Workspace: Calendar API v3 for calendars, Gmail ``users.messages.send`` for mail.

With ``gmail.readonly`` (only when a program collects replies) the mailer also reads
replies to recaps from the employees' inboxes (:class:`GoogleReplyMailer`).

Two ways in, both from the account's ``credentials`` file (mode 0600):

* a service-account key with domain-wide delegation: the connector acts as each person
  (``subject`` = their email), so every calendar is read and written by its owner;
* an authorized-user token written by ``cadence auth google`` (:func:`authorize`): one
  person's consent; other people's calendars must be shared with them.

Every request goes to the configured endpoints (batch requests included), through one
place (:meth:`client.Client.execute`) that translates errors.

The modules, by capability: ``signin`` (scopes, credentials, consent), ``client`` (HTTP,
batches, error translation), ``calendar``, ``mail`` and ``replies``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.connectors.google.calendar import GoogleCalendar, to_event
from agent.connectors.google.client import (
    Client,
    GoogleFailure,
    ca_bundle,
    credentials,
    token_cache,
)
from agent.connectors.google.mail import GoogleMailer, build_message
from agent.connectors.google.replies import GoogleReplyMailer, reply_mailboxes
from agent.connectors.google.signin import (
    SCOPE_EVENTS,
    SCOPE_FREEBUSY,
    SCOPE_READ,
    SCOPE_SEND,
    authorize,
    needed_scopes,
    read_secret_json,
    scopes_for,
    write_secret_json,
)

if TYPE_CHECKING:
    from agent.connectors import Context, FileCheck


def file_checks(ctx: Context) -> list[FileCheck]:
    """The checks ``connect`` makes of the account's files, for ``cadence check``."""
    return [
        ("credentials", lambda: credentials(ctx)),
        ("ca_bundle", lambda: ca_bundle(ctx)),
        ("token_cache", lambda: token_cache(ctx)),
    ]


def connect(ctx: Context) -> tuple[GoogleCalendar, GoogleMailer]:
    """Open the Calendar and Gmail clients of one Google account."""
    client = Client(ctx)
    sender = ctx.account.sender
    if client.read_scope:
        mailboxes = reply_mailboxes(ctx, client.auth.delegated, sender)
        return GoogleCalendar(client), GoogleReplyMailer(
            client, sender, mailboxes, ctx.settings.reply_size_limit(ctx.name)
        )
    return GoogleCalendar(client), GoogleMailer(client, sender)


__all__ = [
    "SCOPE_EVENTS",
    "SCOPE_FREEBUSY",
    "SCOPE_READ",
    "SCOPE_SEND",
    "GoogleCalendar",
    "GoogleFailure",
    "GoogleMailer",
    "GoogleReplyMailer",
    "authorize",
    "build_message",
    "connect",
    "needed_scopes",
    "read_secret_json",
    "scopes_for",
    "to_event",
    "write_secret_json",
]
