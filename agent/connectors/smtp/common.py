"""What sending over SMTP and reading over IMAP share: secrets from the environment, the
TLS mode and connection options from an account's settings, and the one place where
socket, TLS and smtplib errors become Cadence's.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import smtplib
import ssl
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from agent.core.errors import ConfigError, PermanentError, TransientError
from agent.core.retry import RetryPolicy

if TYPE_CHECKING:
    from agent.settings.config import ImapSettings, SmtpSettings


def secret_from_env(variable: str | None, where: str) -> str | None:
    """Return the secret held by the environment variable ``variable`` (None if unnamed).

    Raise ConfigError when the variable is named but unset or empty.
    """
    if not variable:
        return None
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(
            f"{where}: the environment variable {variable} is not set; "
            f"export {variable} with the password before starting Cadence"
        )
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def translate(exc: Exception, where: str) -> TransientError | PermanentError:
    """Map an smtplib, ssl or socket error to a Cadence error (the one place that does)."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return PermanentError(
            f"{where}: authentication failed ({exc.smtp_code}); check username and password_env"
        )
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return PermanentError(f"{where}: every recipient was refused: {exc.recipients}")
    if isinstance(exc, ConnectionRefusedError | smtplib.SMTPConnectError | smtplib.SMTPHeloError):
        # refused before any message was handed over: certainly not sent
        return TransientError(f"{where}: {type(exc).__name__}: {exc}", maybe_done=False)
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
        message = f"{where}: {exc.smtp_code} {text}"
        if 400 <= exc.smtp_code < 500:  # the server answered "not now": nothing was sent
            return TransientError(message, maybe_done=False)
        return PermanentError(message)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentError(f"{where}: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError(
            f"{where}: the server's TLS certificate is not trusted ({exc.verify_message}); "
            "set ca_bundle if it is signed by a private CA"
        )
    return TransientError(f"{where}: {type(exc).__name__}: {exc}")


class Shared(TypedDict, total=False):
    """What the account hands its mailer and reader alike, beside their own settings."""

    ca_bundle: str | None
    retry: RetryPolicy | None
    log: logging.Logger | None


def connection_options(
    settings: SmtpSettings | ImapSettings, what: str, where: str, **shared: Unpack[Shared]
) -> dict[str, Any]:
    """Return the keyword arguments a mailer and a reader take alike from an account's
    ``smtp:`` or ``imap:`` settings (``what``); raise ConfigError for an unset secret."""
    return {
        "ssl_mode": "ssl" if settings.ssl else "starttls" if settings.starttls else "plain",
        "username": settings.username,
        "password": secret_from_env(settings.password_env, f"{where}: {what}: password_env"),
        "ca_bundle": settings.ca_bundle or shared.get("ca_bundle"),
        "timeout": settings.timeout,
        "retry": shared.get("retry"),
        "log": shared.get("log"),
    }
