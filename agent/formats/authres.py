"""Read an ``Authentication-Results`` header field (RFC 8601): pure, text in, values out.

Hand-written rather than taken from PyPI: the ``authres`` package (1.2.0, 2019, untyped)
raises a syntax error on the header Microsoft 365 adds to every message, which has no
authserv-id and carries ``action=none`` without a ``ptype.``. This reader is tolerant in
the same way mail servers are: comments are dropped (they may hold ``;`` and ``=``),
each ``;``-separated part is read as ``method=result`` followed by ``name=value`` pairs,
and a part it cannot read is left out. It never raises; a header it cannot read at all
gives no results, which the caller must treat as "not authenticated".
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """One ``method=result`` with its properties, names lower-cased."""

    method: str  # "dmarc", "spf", "dkim" ... (a method version "/1" dropped)
    result: str  # "pass", "fail", "softfail", "none" ...
    props: tuple[tuple[str, str], ...] = ()  # ("header.from", "example.com"), ("reason", …)

    def prop(self, name: str) -> str | None:
        """The value of property ``name`` (``smtp.mailfrom``, ``header.d`` …), if given."""
        return next((v for k, v in self.props if k == name), None)


@dataclass(frozen=True)
class AuthResults:
    """The results one server recorded; ``authserv_id`` None where it gave none."""

    authserv_id: str | None
    results: tuple[Result, ...] = ()


_PAIR = re.compile(
    r'([A-Za-z0-9][A-Za-z0-9_.-]*(?:\s*/\s*[0-9]+)?)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;"]*)'
)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def parse(value: str) -> AuthResults:
    """Parse the value of one ``Authentication-Results`` field (without its name)."""
    parts = _split(_uncomment(value))
    first = parts[0].strip() if parts else ""
    authserv_id: str | None = None
    if first and not _PAIR.match(first):
        # authserv-id [version]: a value, then an optional number
        words = first.split()
        authserv_id = _unquote(words[0]).lower() if words else None
        parts = parts[1:]
    results: list[Result] = []
    for part in parts:
        pairs = [(k, v) for k, v in _PAIR.findall(part)]
        if not pairs or not part.strip().startswith(pairs[0][0]):
            continue  # "none", or text that is not a result
        method, result = pairs[0]
        method = re.sub(r"\s*/.*$", "", method).lower()
        result = _unquote(result).lower()
        if not result:
            continue
        props = tuple((k.lower(), _unquote(v)) for k, v in pairs[1:])
        results.append(Result(method, result, props))
    return AuthResults(authserv_id, tuple(results))


def _uncomment(text: str) -> str:
    """Drop (nested) comments outside quoted strings, as RFC 5322 CFWS allows anywhere."""
    out: list[str] = []
    depth = 0
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\" and (quoted or depth):
            escaped = True
            if depth == 0:
                out.append(ch)
            continue
        if quoted:
            quoted = ch != '"'
            out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if depth == 0:
                out.append(" ")
        elif depth == 0:
            quoted = ch == '"'
            out.append(ch)
    return "".join(out)


def _split(text: str) -> list[str]:
    """Split at ``;`` outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    found = _QUOTED.fullmatch(value)
    if found:
        return re.sub(r"\\(.)", r"\1", found.group(1))
    return value
