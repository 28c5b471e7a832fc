"""Sign-in with Google and Microsoft: OpenID Connect through Authlib's Starlette client.

``GET /signin/<provider>`` sends the browser to the provider with an authorization-code
request carrying a state, a nonce and a PKCE challenge (S256); Authlib keeps them in a
short-lived signed cookie (``cadence_oidc``, Starlette's session middleware). The
provider sends the browser back to ``/signin/<provider>/callback``: Authlib checks the
state, trades the code (with the PKCE verifier and the client secret) for tokens, and
checks the ID token: its RS256 signature against the provider's JWKS (from the discovery
document), issuer, audience, expiry and nonce. Cadence then checks what it trusts an
address on: Google's ``email_verified`` (and ``hd`` when ``hosted_domain`` is set);
Microsoft's tenant (``tid``), since only the tenant's own administrators vouch for its
``preferred_username``. The address must belong to someone the web app has pages for;
the session is then the one the mailed link gives.

Starting a sign-in counts against the per-client limit of the mailed links, and each
address coming back against the per-address limit.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.starlette_client import OAuth
from joserfc.errors import JoseError
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from agent.connectors.google.signin import read_secret_json
from agent.connectors.smtp.common import secret_from_env
from agent.core.errors import ConfigError
from agent.rules.messages import N_
from agent.settings.config import Settings
from agent.settings.schema import MicrosoftAccount, WebConfig
from agent.web import security
from agent.web.base import Web, secure

log = logging.getLogger("cadence.web")

LABELS = {"google": "Google", "microsoft": "Microsoft"}
TOO_MANY = N_("Too many sign-in requests: wait a few minutes and try again.")
UNREACHABLE = N_("%(label)s cannot be reached: try again later")
STATE_COOKIE = "cadence_oidc"
GOOGLE_ISSUER = "https://accounts.google.com"
#: how long a browser has between leaving for the provider and coming back
STATE_AGE = 600
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


class Denied(Exception):
    """The provider's answer, or the person it names, is not accepted."""


@dataclass
class Provider:
    name: str
    #: the address the ID token's claims vouch for, or Denied
    address: Callable[[Mapping[str, Any], Mapping[str, Any]], str]

    @property
    def label(self) -> str:
        return LABELS[self.name]


def configured(conf: WebConfig) -> list[tuple[str, str]]:
    """(name, label) of the providers the sign-in page offers, in a fixed order."""
    return [(n, LABELS[n]) for n in ("google", "microsoft") if getattr(conf.signin, n)]


@dataclass(frozen=True)
class Client:
    """What Authlib needs of one provider: the client, its secret and where to ask."""

    client_id: str
    secret: str
    discovery: str
    verify: ssl.SSLContext | bool
    timeout: float


def _verify(settings: Settings, bundle: str | None, key: str) -> ssl.SSLContext | bool:
    if not bundle:
        return True
    path = settings.resolve(bundle)
    if not path.is_file():
        raise ConfigError(f"{key}: {path} does not exist")
    return ssl.create_default_context(cafile=str(path))


def _google(settings: Settings) -> Client:
    """The Web application client's id and secret, from its JSON file or id + env."""
    conf = settings.web.signin.google if settings.web else None
    assert conf is not None
    where = "web.signin.google"
    verify = _verify(settings, conf.ca_bundle, f"{where}.ca_bundle")
    if conf.client_file:
        try:
            data = read_secret_json(settings.resolve(conf.client_file))
        except ConfigError as exc:
            raise ConfigError(f"{where}.client_file: {exc}") from None
        web = data.get("web")
        if not isinstance(web, dict) or not web.get("client_id") or not web.get("client_secret"):
            raise ConfigError(
                f"{where}.client_file: not the JSON of an OAuth client of type Web application"
            )
        client_id, secret = str(web["client_id"]), str(web["client_secret"])
    else:
        found = secret_from_env(conf.client_secret_env, f"{where}.client_secret_env")
        assert conf.client_id and found
        client_id, secret = conf.client_id, found
    return Client(client_id, secret, conf.discovery, verify, conf.timeout)


def _microsoft(settings: Settings) -> Client:
    """The app registration of the ``microsoft`` account named, and its secret."""
    conf = settings.web.signin.microsoft if settings.web else None
    assert conf is not None
    where = "web.signin.microsoft"
    account = settings.accounts[conf.account]
    assert isinstance(account, MicrosoftAccount)
    env = conf.client_secret_env or account.client_secret_env
    if not env:
        raise ConfigError(
            f"{where}: the account {conf.account!r} has no client_secret_env; "
            f"set {where}.client_secret_env"
        )
    secret = secret_from_env(env, f"{where}.client_secret_env")
    assert secret
    discovery = conf.discovery or (
        f"{account.authority.rstrip('/')}/{account.tenant}/v2.0/.well-known/openid-configuration"
    )
    verify = _verify(settings, account.ca_bundle, f"accounts.{conf.account}.ca_bundle")
    return Client(account.client_id, secret, discovery, verify, conf.timeout)


CLIENTS: dict[str, Callable[[Settings], Client]] = {"google": _google, "microsoft": _microsoft}


def preflight(settings: Settings) -> list[tuple[list[str | int], str]]:
    """What ``cadence check`` reports of ``web.signin`` (a secret missing, a client file
    others can read), by key, without a network call."""
    problems: list[tuple[list[str | int], str]] = []
    if settings.web is None:
        return problems
    for name, _label in configured(settings.web):
        try:
            CLIENTS[name](settings)
        except ConfigError as exc:
            problems.append((["web", "signin", name], str(exc)))
    return problems


def _google_address(hosted_domain: str | None) -> Callable[..., str]:
    def address(claims: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
        email = str(claims.get("email") or "")
        if not email or claims.get("email_verified") is not True:
            raise Denied("Google did not vouch for the account's address (email_verified)")
        if hosted_domain and str(claims.get("hd") or "").lower() != hosted_domain.lower():
            raise Denied(f"only accounts of {hosted_domain} may sign in with Google")
        return email

    return address


def _tenant_id(tenant: str, metadata: Mapping[str, Any]) -> str:
    """The tenant's id: the configured one when it is a GUID, else the one in the
    discovery document's issuer (``https://login.microsoftonline.com/<tid>/v2.0``)."""
    if GUID.match(tenant):
        return tenant.lower()
    parts = str(metadata.get("issuer", "")).rstrip("/").split("/")
    return parts[-2].lower() if len(parts) >= 2 else ""


def _microsoft_address(tenant: str) -> Callable[..., str]:
    def address(claims: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
        expected = _tenant_id(tenant, metadata)
        tid = str(claims.get("tid") or "").lower()
        if not expected or not hmac.compare_digest(tid, expected):
            raise Denied("the Microsoft account belongs to another organization (tenant)")
        # the sign-in name (the UPN for the tenant's members, which only its
        # administrators set) before ``email``, which a user's profile may carry freely
        email = str(claims.get("preferred_username") or claims.get("email") or "")
        if "@" not in email:
            raise Denied("Microsoft did not give the account's address")
        return email

    return address


def register(web: Web) -> tuple[OAuth, dict[str, Provider]]:
    """The Authlib clients of the configured providers; secrets are read here, at start,
    so a missing one stops ``cadence serve`` with the key to fix."""
    settings, signin = web.settings, web.conf.signin
    oauth = OAuth()
    providers: dict[str, Provider] = {}
    for name, _label in configured(web.conf):
        try:
            client = CLIENTS[name](settings)
        except ConfigError as exc:
            raise ConfigError(f"{settings.path}: {exc}") from None
        oauth.register(
            name,
            client_id=client.client_id,
            client_secret=client.secret,
            server_metadata_url=client.discovery,
            client_kwargs={
                "scope": "openid email profile",
                "code_challenge_method": "S256",
                "verify": client.verify,
                "timeout": client.timeout,
            },
        )
    if signin.google is not None:
        providers["google"] = Provider("google", _google_address(signin.google.hosted_domain))
    if signin.microsoft is not None:
        account = settings.accounts[signin.microsoft.account]
        assert isinstance(account, MicrosoftAccount)
        providers["microsoft"] = Provider("microsoft", _microsoft_address(account.tenant))
    return oauth, providers


def middleware(web: Web) -> list[Middleware]:
    """The signed cookie Authlib keeps a sign-in's state, nonce and PKCE verifier in."""
    if not configured(web.conf):
        return []
    return [
        Middleware(
            SessionMiddleware,
            secret_key=web.keys.derived("cadence.oidc"),
            session_cookie=STATE_COOKIE,
            max_age=STATE_AGE,
            same_site="lax",
            https_only=web.conf.secure_cookies,
        )
    ]


def routes(web: Web) -> list[BaseRoute]:
    if not configured(web.conf):
        return []
    oauth, providers = register(web)

    def refused(request: Request, status: int, message: str, **values: str) -> Response:
        """A refusal in the browser's language (nobody is signed in yet): ``message`` is
        a catalogue message, ``values`` its placeholders."""
        language = web.language(request)
        text = web.gettext(language)(message) % values
        page = web.page(request, "refused.html.j2", status, language=language, message=text)
        return secure(page)

    async def start(request: Request) -> Response:
        provider = providers[request.url.path.split("/")[2]]
        client = request.client.host if request.client else "?"
        if not web.signin_by_client.allow(client, web.clock()):
            response = refused(request, 429, TOO_MANY)
            response.headers["Retry-After"] = "900"
            return response
        app = oauth.create_client(provider.name)
        redirect = f"{web.base_url}/signin/{provider.name}/callback"
        try:
            response = await app.authorize_redirect(request, redirect)
        except (httpx2.HTTPError, ValueError, KeyError, RuntimeError) as exc:
            log.warning("sign-in with %s: discovery failed: %s", provider.label, type(exc).__name__)
            return refused(request, 502, UNREACHABLE, label=provider.label)
        return secure(response)

    async def callback(request: Request) -> Response:
        provider = providers[request.url.path.split("/")[2]]
        label = provider.label
        app = oauth.create_client(provider.name)
        try:
            metadata = await app.load_server_metadata()
            # Authlib checks the issuer, and the audience only through ``azp``: an ID
            # token for another client that names this one in ``azp`` would pass
            issuers = [metadata.get("issuer")]
            if metadata.get("issuer") == GOOGLE_ISSUER:  # Google documents both forms
                issuers.append(GOOGLE_ISSUER.removeprefix("https://"))
            options = {
                "iss": {"essential": True, "values": issuers},
                "aud": {"essential": True, "values": [app.client_id]},
            }
            token = await app.authorize_access_token(request, claims_options=options)
            claims = token.get("userinfo")
            if not claims:
                raise Denied("no ID token came back")
            email = provider.address(claims, metadata)
        except Denied as exc:
            log.info("sign-in with %s refused: %s", label, exc)
            why = str(exc)
            return refused(
                request, 403, N_("Sign-in with %(label)s refused: %(why)s."), label=label, why=why
            )
        except (AuthlibBaseError, JoseError) as exc:
            log.info("sign-in with %s refused: %s", label, type(exc).__name__)
            why = str(
                getattr(exc, "description", None)
                or getattr(exc, "error", None)
                or "its answer did not check out"
            )
            message = N_("Sign-in with %(label)s did not complete (%(why)s): try again.")
            return refused(request, 403, message, label=label, why=why)
        except (httpx2.HTTPError, ValueError, KeyError, json.JSONDecodeError) as exc:
            log.warning("sign-in with %s failed: %s", label, type(exc).__name__)
            return refused(request, 502, UNREACHABLE, label=label)
        email = email.strip().lower()
        now = web.clock()
        if not web.signin_by_address.allow(email, now):
            response = refused(request, 429, TOO_MANY)
            response.headers["Retry-After"] = "900"
            return response

        def known() -> bool:
            with web.store() as store:
                return web.viewer_of(store, email).known

        if not await run_in_threadpool(known):
            log.info("sign-in with %s refused: an address Cadence has no pages for", label)
            unknown = N_(
                "%(email)s signed in with %(label)s, but Cadence has no pages for this "
                "address. Ask your administrator to add you, or sign in with your work account."
            )
            return refused(request, 403, unknown, email=email, label=label)
        log.info("signed in with %s", label)
        response = RedirectResponse("/", status_code=303)
        web.set_cookie(
            response, security.SESSION_COOKIE, web.session_cookie(email, now), web.conf.session
        )
        return secure(response)

    found: list[BaseRoute] = []
    for name in providers:
        found.append(Route(f"/signin/{name}", start, methods=["GET"]))
        found.append(Route(f"/signin/{name}/callback", callback, methods=["GET"]))
    return found
