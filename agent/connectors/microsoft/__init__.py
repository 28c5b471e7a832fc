"""Microsoft 365 through Microsoft Graph v1.0, authenticated with MSAL.

Two ways in:

- **organization**: client credentials (a secret from the environment variable named by
  ``client_secret_env``, or a certificate file) with application permissions, acting on
  the mailboxes of the people in the config;
- **single person**: the device-code flow (:func:`device_code_login`, run by
  ``cadence auth microsoft``), whose MSAL token cache is kept in a 0600 file and used
  silently afterwards.

What it calls, per mailbox ``/users/{email}``: ``calendarView/delta`` (the delta link is
replayed verbatim and kept in the cursor), ``events`` (create with ``transactionId``,
tagged with a single-value extended property and found by it), ``calendar/getSchedule``
(20 schedules per call, periods under 62 days, several calls in one ``$batch``),
``mailboxSettings`` and ``sendMail`` (base64 MIME, so Message-ID, In-Reply-To and
References survive: ``internetMessageHeaders`` only takes ``x-`` headers).

Replies to recaps (only when a program sets ``recap: {collect_replies: true}``, which
needs ``Mail.Read``: ``Mail.ReadBasic`` leaves out bodies, so no MIME): per employee
mailbox, ``mailFolders/inbox/messages`` received in the last 30 days (ids only), then
``messages/{id}/$value`` once for each id the mailer has not read before.

The modules, by capability: ``graph`` (tokens, HTTP and the translation of errors),
``signin`` (the device-code flow, which accounts read mail), ``events`` (Graph's JSON to
Cadence's values), ``calendar`` and ``mail``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.connectors.microsoft import signin
from agent.connectors.microsoft.calendar import MicrosoftCalendar
from agent.connectors.microsoft.events import KEY_PROPERTY, format_dtz, to_event
from agent.connectors.microsoft.graph import Graph, delegated_scopes
from agent.connectors.microsoft.mail import MicrosoftMailer, build_mime
from agent.connectors.microsoft.signin import device_code_login, file_checks, login

if TYPE_CHECKING:
    from agent.connectors import Context
    from agent.settings.config import MicrosoftAccount


def connect(ctx: Context) -> tuple[MicrosoftCalendar, MicrosoftMailer]:
    """Open the Graph client of one Microsoft account, shared by its calendar and mailer."""
    account: MicrosoftAccount = ctx.account
    read_mail = signin.reads_replies(ctx.settings, ctx.name)
    graph = Graph(account, ctx.settings.resolve, ctx.retry, read_mail=read_mail)
    mailboxes: list[str] = []
    if read_mail:
        # replies come back to the From of Cadence's mail: the shared sender, or else
        # each employee of a program that collects them
        mailboxes = [account.sender] if account.sender else list(ctx.reply_mailboxes)
    mailer = MicrosoftMailer(
        graph,
        account.sender,
        mailboxes,
        ctx.correspondents,
        ctx.settings.reply_size_limit(ctx.name),
    )
    return MicrosoftCalendar(graph, ctx.people), mailer


__all__ = [
    "KEY_PROPERTY",
    "Graph",
    "MicrosoftCalendar",
    "MicrosoftMailer",
    "build_mime",
    "connect",
    "delegated_scopes",
    "device_code_login",
    "file_checks",
    "format_dtz",
    "login",
    "to_event",
]
