"""Whether a reply's From is authenticated, from its ``Authentication-Results`` (RFC 8601).

A From header is whatever the sender typed; the receiving server's verdicts on DMARC,
SPF and DKIM say whether the domain in it sent the mail. A reply counts as from its From
address when DMARC passed for that domain, or SPF or DKIM passed for a domain aligned
with it. Alignment is relaxed but conservative: the same domain, or one a subdomain of
the other (``mail.acme.example`` and ``acme.example``); two sibling subdomains are not
taken as aligned, since telling an organization's domain needs the public suffix list.

Only the topmost ``Authentication-Results`` header is read: the receiving server adds
its own above everything the sender wrote, and a sender can write one of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: the methods that may vouch for the From domain
_METHODS = ("dmarc", "spf", "dkim")


@dataclass(frozen=True)
class Result:
    """One ``method=result`` with its properties (``header.from`` → ``acme.example``)."""

    method: str
    result: str
    properties: dict[str, str] = field(default_factory=dict)


def _uncomment(text: str) -> str:
    """Drop RFC 5322 comments (nested parentheses) outside quoted strings."""
    out: list[str] = []
    depth, quoted, escaped = 0, False, False
    for char in text:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\":
            escaped = True
            if depth == 0:
                out.append(char)
            continue
        if quoted:
            out.append(char)
            quoted = char != '"'
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(char)
            quoted = char == '"'
    return "".join(out)


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


_PAIR = re.compile(r'([A-Za-z0-9._/-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;]+)')


def parse(header: str) -> list[Result]:
    """Return the results of one ``Authentication-Results`` value.

    The value is ``authserv-id; method=result ptype.property=value ...; ...``; Exchange
    Online leaves the authserv-id out and starts with the first result, which is read too.
    """
    results: list[Result] = []
    for index, part in enumerate(_split(_uncomment(header), ";")):
        words = part.split()
        if not words or (index == 0 and "=" not in words[0]):
            continue  # the authserv-id (and its version)
        pairs = _PAIR.findall(part)
        if not pairs:
            continue  # "none"
        (method, result), rest = pairs[0], pairs[1:]
        properties = {k.lower(): v.strip('"').lower() for k, v in rest}
        results.append(Result(method.split("/")[0].lower(), result.lower(), properties))
    return results


def aligned(domain: str, other: str) -> bool:
    """Relaxed alignment: the same domain, or one a subdomain of the other."""
    domain, other = domain.lower().rstrip("."), other.lower().rstrip(".")
    if not domain or not other:
        return False
    return domain == other or domain.endswith("." + other) or other.endswith("." + domain)


def _domain_of(value: str) -> str:
    return value.rsplit("@", 1)[-1]


def verdict(headers: list[str], sender: str) -> str | None:
    """Return None when the topmost header shows ``sender``'s domain sent the mail, else
    why not, in words for the audit log."""
    domain = _domain_of(sender)
    if not headers:
        return "it carries no Authentication-Results, so its From can't be verified"
    results = [r for r in parse(headers[0]) if r.method in _METHODS]
    for r in results:
        if r.result != "pass":
            continue
        if r.method == "dmarc" and r.properties.get("header.from", "") == domain:
            return None
        if r.method == "spf":
            used = r.properties.get("smtp.mailfrom") or r.properties.get("smtp.helo", "")
            if aligned(domain, _domain_of(used)):
                return None
        if r.method == "dkim":
            signer = r.properties.get("header.d") or _domain_of(r.properties.get("header.i", ""))
            if aligned(domain, signer):
                return None
    seen = ", ".join(f"{r.method}={r.result}" for r in results) or "no DMARC, SPF or DKIM result"
    return f"its From domain {domain} is not authenticated ({seen})"
