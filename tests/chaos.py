"""The faults the fake Google and Graph servers inject at random in their chaos modes.

Answers the client can read: ``429`` (with Retry-After), ``403`` (Google's
rateLimitExceeded), ``500``, ``502``, ``503``, and ``lost`` (a 503 after the call took
effect). Faults of the connection, carried out by the HTTP handler outside the server's
lock (:class:`Transport`): ``latency`` (the answer comes a few milliseconds late),
``timeout`` (the call takes effect and the answer is held until the client gives up),
``drop`` (the connection closes before the call takes effect) and ``drop-after`` (it
closes after). ``expired``: the access token the call carries is revoked and the call
answered 401, as when a token expires in the middle of a tick.

The OAuth token endpoints (Google's token URI, the Microsoft identity platform's token
endpoint and its OpenID configuration) get :data:`TOKEN` faults when a server's chaos
is asked to fault them too: an answer in the OAuth error shape (RFC 6749 section 5.2),
a gateway's HTML page for 502, or a fault of the connection.
"""

from __future__ import annotations

import select
import time
from http.server import BaseHTTPRequestHandler

#: answers a client can read, each with no effect except ``lost``
STATUS = ("429", "500", "502", "503", "lost")
#: faults of the connection (:class:`Transport`)
TRANSPORT = ("latency", "timeout", "drop", "drop-after")
#: every kind a plain API call may get (Google adds its 403 rateLimitExceeded)
KINDS = (*STATUS, *TRANSPORT, "expired")
#: what an HTTP batch as a whole may get: its parts are throttled one by one
BATCH = ("500", "502", "503", *TRANSPORT, "expired")
#: what a token endpoint may get: ``lost`` and ``drop-after`` issue a token nobody reads
TOKEN = ("429", "500", "502", "503", "lost", *TRANSPORT)
#: seconds of added latency
LATENCY = 0.005
#: the most seconds a ``timeout`` holds the answer when the client does not give up
HOLD = 5.0


class Transport(Exception):
    """Raised through a server's dispatch to its handler, which carries it out."""

    def __init__(self, kind: str, answer: tuple[int, dict[str, str], bytes] | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.answer = answer


def carry_out(
    handler: BaseHTTPRequestHandler, fault: Transport
) -> tuple[int, dict[str, str], bytes] | None:
    """Do to the connection what ``fault`` says; return the answer still to be sent."""
    if fault.kind == "latency":
        time.sleep(LATENCY)
        return fault.answer
    if fault.kind == "timeout":
        # hold the answer until the client closes the connection (its timeout) or HOLD passes
        select.select([handler.connection], [], [], HOLD)
    handler.close_connection = True  # no answer: the handler closes the connection
    return None


def token_answer(kind: str) -> tuple[int, dict[str, str], bytes]:
    """The answer of a token endpoint for a status fault of :data:`TOKEN` (``lost``: a
    503 after the token was issued)."""
    import json

    if kind == "502":  # a gateway in front of the endpoint answers with its own page
        page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        return 502, {"Content-Type": "text/html"}, page
    status = 503 if kind == "lost" else int(kind)
    error = "server_error" if status == 500 else "temporarily_unavailable"
    headers = {"Content-Type": "application/json"}
    if status == 429:
        headers["Retry-After"] = "2"
    body = {"error": error, "error_description": "The service is busy; retry later."}
    return status, headers, json.dumps(body).encode()
