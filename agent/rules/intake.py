"""Whether a reply to a recap is taken: a sender that is who From says, within the limits.

Anyone can write an employee's address into From and put a recap's Message-ID in
In-Reply-To. The receiving mail server checks SPF, DKIM and DMARC and records what it
found in an ``Authentication-Results`` field above the others (RFC 8601); with
``recap.trust: authenticated`` a reply counts only when that field shows the From
domain authenticated. Limits keep one reply (or a flood of them) from costing much:
its size, its action lines, and the updated recaps it makes go out. Pure: values in,
the reason for a refusal (or None) out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agent.core.model import ReplyIntake as Intake
from agent.formats import authres


def trust_for(intake: Intake, provider: str) -> str:
    """The trust in force for replies read from an account of ``provider``: files in a
    local inbox carry no server's checks, so From is all there is to go by."""
    if intake.trust is not None:
        return intake.trust
    return "from" if provider == "local" else "authenticated"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


def aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment (RFC 7489 section 3.1) without the public suffix list: the
    same domain, or one a subdomain of the other."""
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if not domain or not from_domain:
        return False
    return (
        domain == from_domain
        or domain.endswith("." + from_domain)
        or from_domain.endswith("." + domain)
    )


def authenticity(
    from_addresses: Sequence[str], fields: Sequence[str], authserv_ids: Sequence[str] = ()
) -> str | None:
    """Return why the sender is not authenticated, or None when it is.

    ``fields`` are the message's Authentication-Results values, topmost first. The
    topmost is the receiving server's own (servers add theirs above what came in);
    with ``authserv_ids``, the topmost of those servers' instead, as RFC 8601 section 5
    has readers ignore fields of servers they do not know. The sender is authenticated
    by a DMARC pass for the From domain, or, where DMARC gives no verdict, an SPF pass
    for an aligned envelope sender or a DKIM pass for an aligned signing domain.
    """
    if len(from_addresses) != 1:
        return f"From holds {len(from_addresses)} addresses; one sender is needed"
    sender = from_addresses[0]
    from_domain = domain_of(sender)
    wanted = {a.lower() for a in authserv_ids}
    chosen: authres.AuthResults | None = None
    for value in fields:
        parsed = authres.parse(value)
        if not wanted or (parsed.authserv_id or "") in wanted:
            chosen = parsed
            break
    if chosen is None:
        servers = f" from {', '.join(sorted(wanted))}" if wanted else ""
        return f"no Authentication-Results{servers}: the sender {sender} cannot be verified"
    seen: list[str] = []
    dmarc = [r for r in chosen.results if r.method == "dmarc"]
    for r in dmarc:
        header_from = r.prop("header.from")
        if header_from and domain_of(header_from) != from_domain:
            seen.append(f"dmarc={r.result} for {header_from}")
            continue
        if r.result == "pass":
            return None
        if r.result in ("fail", "quarantine", "reject"):
            return f"{sender} failed DMARC (dmarc={r.result}); the From may be forged"
        seen.append(f"dmarc={r.result}")
    for r in chosen.results:
        if r.method == "spf":
            mailfrom = r.prop("smtp.mailfrom") or r.prop("smtp.helo") or ""
            if r.result == "pass" and aligned(domain_of(mailfrom), from_domain):
                return None
            seen.append(f"spf={r.result} for {mailfrom or 'no envelope sender'}")
        elif r.method == "dkim":
            signer = r.prop("header.d") or domain_of(r.prop("header.i") or "")
            if r.result == "pass" and aligned(signer, from_domain):
                return None
            seen.append(f"dkim={r.result} for {signer or 'no signing domain'}")
    found = ", ".join(seen) or "no SPF, DKIM or DMARC result"
    return f"{sender} is not authenticated for {from_domain} ({found})"


def size_refusal(size: int, intake: Intake) -> str | None:
    """Why a reply of ``size`` bytes is not read, or None."""
    return _over(size, intake.max_size, "is {}", "max_reply_size", "not read", _bytes)


def actions_refusal(count: int, intake: Intake) -> str | None:
    """Why a reply with ``count`` action lines is not recorded, or None."""
    return _over(count, intake.max_actions, "has {} action lines", "max_actions", "none recorded")


def _over(
    value: int, limit: int, said: str, key: str, outcome: str, show: Callable[[int], str] = str
) -> str | None:
    if value <= limit:
        return None
    return f"the reply {said.format(show(value))}, over recap.{key} ({show(limit)}); {outcome}"


def update_refusal(sent_today: int, intake: Intake) -> str | None:
    """Why no updated recap answers a reply, when ``sent_today`` were planned in the
    24 hours before it, or None."""
    if sent_today < intake.max_updates_per_day:
        return None
    return (
        f"{sent_today} updated recaps in the last 24 hours, the most recap.max_updates_per_day "
        f"allows; its actions are recorded and the next updated recap shows them"
    )


def _bytes(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"
