"""A local OpenID Connect provider over HTTPS (trustme), as Google's and Microsoft's
identity platforms answer a web app's sign-in.

It serves a discovery document, a JWKS with a test RSA key, an authorize endpoint that
checks the request (client, registered redirect URI, ``openid`` scope, state, nonce, a
PKCE S256 challenge) and redirects back with a single-use code, and a token endpoint
that checks the client's secret (HTTP Basic or form), the code, the redirect URI and the
PKCE verifier, and returns an ID token signed RS256 with ``at_hash``.

Who signs in is ``who`` (the claims of the account, as the provider's login page would
settle them). ``faults`` bend the next ID tokens for the refusal tests: another
``aud`` or ``iss``, an ``exp`` in the past, a signature by a key not in the JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
from joserfc import jwt
from joserfc.jwk import RSAKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OIDCServer:
    """One provider: ``prefix`` is the issuer's path (``/<tid>/v2.0`` for Microsoft)."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        redirect_uris: list[str],
        *,
        prefix: str = "",
        ca: trustme.CA | None = None,
    ) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.redirect_uris = list(redirect_uris)
        self.prefix = prefix
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig"})
        #: a key of the same id that the JWKS does not hold (a forged signature)
        self.rogue = RSAKey.generate_key(2048, parameters={"kid": "test-key-1"})
        #: the signed-in account's claims (email, email_verified, tid, ...)
        self.who: dict[str, Any] = {}
        #: claims laid over the next ID tokens; "rogue": True signs with the rogue key
        self.faults: dict[str, Any] = {}
        #: code → what the authorize request carried
        self.codes: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.ca = ca or trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        server = self

        class Handler(_Handler):
            provider = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.05,), name="fake-oidc", daemon=True
        )

    def __enter__(self) -> OIDCServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def issuer(self) -> str:
        return self.url + self.prefix

    @property
    def discovery(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    def write_ca(self, path: Path) -> Path:
        self.ca.cert_pem.write_to_path(str(path))
        return path

    # --- the endpoints -------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "jwks_uri": self.issuer + "/keys",
            "userinfo_endpoint": self.issuer + "/userinfo",
            "response_types_supported": ["code", "id_token", "code id_token"],
            "subject_types_supported": ["public", "pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "claims_supported": ["aud", "email", "email_verified", "exp", "iat", "iss", "sub"],
        }

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any]]:
        """A redirect back with a code, or a 400 for a request a provider would refuse."""
        need = ("client_id", "redirect_uri", "response_type", "scope", "state", "nonce")
        missing = [k for k in need if not query.get(k)]
        if missing:
            return 400, {}, {"error": "invalid_request", "missing": missing}
        if query["client_id"] != self.client_id:
            return 400, {}, {"error": "unauthorized_client"}
        if query["redirect_uri"] not in self.redirect_uris:
            return 400, {}, {"error": "redirect_uri_mismatch"}
        if query["response_type"] != "code" or "openid" not in query["scope"].split():
            return 400, {}, {"error": "unsupported_response_type"}
        if (
            query.get("code_challenge_method") != "S256"
            or len(query.get("code_challenge", "")) < 43
        ):
            return 400, {}, {"error": "invalid_request", "error_description": "PKCE S256 required"}
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = dict(query)
        back = {"code": code, "state": query["state"]}
        location = query["redirect_uri"] + "?" + urllib.parse.urlencode(back)
        return 302, {"Location": location}, {}

    def token(
        self, form: dict[str, str], basic: tuple[str, str] | None
    ) -> tuple[int, dict[str, Any]]:
        client = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        if client != (self.client_id, self.client_secret):
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self.lock:
            asked = self.codes.pop(form.get("code", ""), None)
        if asked is None:
            return 400, {"error": "invalid_grant", "error_description": "unknown or used code"}
        if form.get("redirect_uri") != asked["redirect_uri"]:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs"}
        verifier = form.get("code_verifier", "")
        if _b64(hashlib.sha256(verifier.encode()).digest()) != asked["code_challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verifier"}
        access = secrets.token_urlsafe(32)
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": hashlib.sha256(str(self.who.get("email")).encode()).hexdigest()[:21],
            "aud": self.client_id,
            "iat": now,
            "exp": now + 3600,
            "nonce": asked["nonce"],
            "at_hash": _b64(hashlib.sha256(access.encode()).digest()[:16]),
            **self.who,
        }
        faults = dict(self.faults)
        key = self.rogue if faults.pop("rogue", False) else self.key
        claims.update(faults)
        header = {"alg": "RS256", "kid": "test-key-1", "typ": "JWT"}
        id_token = jwt.encode(header, claims, key)
        body = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 3599,
            "scope": asked["scope"],
            "id_token": id_token,
        }
        return 200, body


class _Handler(BaseHTTPRequestHandler):
    provider: OIDCServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode() if body or status != 302 else b""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        p = self.provider
        parts = urllib.parse.urlsplit(self.path)
        route = parts.path.removeprefix(p.prefix)
        p.requests.append(("GET", route))
        if route == "/.well-known/openid-configuration":
            self._answer(200, p.metadata())
        elif route == "/keys":
            self._answer(200, {"keys": [p.key.as_dict(private=False)]})
        elif route == "/authorize":
            query = dict(urllib.parse.parse_qsl(parts.query))
            status, headers, body = p.authorize(query)
            self._answer(status, body, headers)
        else:
            self._answer(404, {"error": "not_found"})

    def do_POST(self) -> None:
        p = self.provider
        route = urllib.parse.urlsplit(self.path).path.removeprefix(p.prefix)
        p.requests.append(("POST", route))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        if route != "/token":
            self._answer(404, {"error": "not_found"})
            return
        if not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            self._answer(400, {"error": "invalid_request"})
            return
        form = dict(urllib.parse.parse_qsl(raw))
        basic = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            basic = (urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(secret))
        status, body = p.token(form, basic)
        self._answer(status, body)
