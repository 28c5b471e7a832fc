"""Signing one person in (``cadence auth microsoft``), and which accounts must read mail.

Mail.Read is asked for only when a program collects replies to recaps.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msal
import requests

from agent.connectors.microsoft.graph import (
    authority_url,
    certificate,
    delegated_scopes,
    discovery_kwargs,
    load_cache,
    make_session,
    private_file,
    token_cache,
    write_private,
)
from agent.core.errors import ConfigError, PermanentError, TransientError
from agent.settings.config import MicrosoftAccount

if TYPE_CHECKING:
    from agent.connectors import Context, FileCheck


def device_code_login(
    account: MicrosoftAccount,
    resolve: Callable[[str], Path],
    *,
    show: Callable[[str], None] = print,
    read_mail: bool = False,
) -> str:
    """Sign one person in with the device-code flow; return the signed-in username.

    Shows MSAL's message (the URL and the code to enter), waits for the sign-in, and
    writes MSAL's token cache to ``account.token_cache`` atomically with mode 0600.
    Raise ConfigError without a token_cache, PermanentError when the sign-in fails.
    """
    if not account.token_cache:
        raise ConfigError("set token_cache: FILE on the microsoft account to keep the sign-in")
    path = resolve(account.token_cache)
    if path.exists():
        private_file(path, "token_cache")
    cache = load_cache(path)
    session = make_session(account, resolve)
    try:
        app = msal.PublicClientApplication(
            account.client_id,
            authority=authority_url(account),
            token_cache=cache,
            http_client=session,
            **discovery_kwargs(account),
        )
        scopes = delegated_scopes(account, read_mail=read_mail)
        try:
            flow = app.initiate_device_flow(scopes=scopes)
            if "user_code" not in flow:
                raise PermanentError(
                    f"device-code sign-in refused: {flow.get('error')} "
                    f"{flow.get('error_description', '')}".strip()
                )
            show(str(flow["message"]))
            result = app.acquire_token_by_device_flow(flow)
        except requests.RequestException as exc:
            raise TransientError(f"device-code sign-in failed: {type(exc).__name__}") from exc
        if "access_token" not in result:
            raise PermanentError(
                f"device-code sign-in failed: {result.get('error')} "
                f"{str(result.get('error_description', '')).splitlines()[0:1]}"
            )
        write_private(path, cache.serialize())
        claims = result.get("id_token_claims") or {}
        return str(claims.get("preferred_username") or "")
    finally:
        session.close()


def login(settings: Any, account: str | None = None, *, show: Callable[[str], None] = print) -> str:
    """``cadence auth microsoft``: sign the person in for the named (or only) account.

    ``settings`` is :class:`agent.settings.config.Settings`. Return the signed-in username; raise
    ConfigError when no microsoft account (or more than one, without ``account``) exists.
    """
    names = [n for n, a in settings.accounts.items() if isinstance(a, MicrosoftAccount)]
    if account is not None:
        if account not in names:
            choices = ", ".join(names) or "none in the config"
            raise ConfigError(f"no microsoft account named {account!r}; choose one of: {choices}")
        names = [account]
    if len(names) != 1:
        found = ", ".join(names) or "none"
        raise ConfigError(f"name the microsoft account to sign in with --account (found: {found})")
    chosen: MicrosoftAccount = settings.accounts[names[0]]
    read_mail = reads_replies(settings, names[0])
    return device_code_login(chosen, settings.resolve, show=show, read_mail=read_mail)


def replying_employees(settings: Any, account: str) -> list[str]:
    """The employees on ``account`` whose program collects replies to recaps."""
    return list(settings.reply_accounts.get(account, ()))


def reads_replies(settings: Any, account: str) -> bool:
    """Whether ``account`` must read mail (hold Mail.Read) to collect replies."""
    return bool(replying_employees(settings, account))


def file_checks(ctx: Context) -> list[FileCheck]:
    """The checks ``connect`` makes of the account's files, for ``cadence check``."""
    account: MicrosoftAccount = ctx.account
    resolve = ctx.settings.resolve
    checks: list[FileCheck] = [
        ("ca_bundle", lambda: make_session(account, resolve).close()),
        ("token_cache", lambda: token_cache(account, resolve)),
    ]
    if account.client_certificate:
        checks.append(("client_certificate", lambda: certificate(account, resolve)))
    return checks
