"""Who may see what, as plain functions of the settings (no I/O).

- An employee sees and edits their own plan, and sees their own relationships.
- A partner (leader, mentor) sees the relationships they are the partner of, and the
  plan of an employee of theirs who shares it.
- Anyone an employee chose as a reader of their plan (``plan_readers``) sees that plan,
  and nothing else of theirs.
- An administrator or HR (``web.admins``) sees the organization report, the audit log
  and the health; not anyone's plan.

Everything else is refused; the pages answer 403 and show none of the data.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.model import Relationship
from agent.settings.config import Settings


@dataclass(frozen=True)
class Viewer:
    email: str
    name: str
    admin: bool
    #: the relationships the viewer is the employee of
    own: tuple[Relationship, ...]
    #: the relationships the viewer is the partner (leader, mentor) of
    partner_of: tuple[Relationship, ...]
    #: the employees who chose the viewer, one by one, to read their plan
    reads: tuple[str, ...] = ()
    #: the language of the viewer's mail, which the pages use too; None: not a person
    #: of the config or the directory (the browser's language is used)
    language: str | None = None

    @property
    def employee(self) -> bool:
        return bool(self.own)

    @property
    def leader(self) -> bool:
        return bool(self.partner_of)

    def may_read_plan(self, employee: str, shared: bool) -> bool:
        """Their own plan; an employee's of theirs who shares it; one whose employee
        chose them."""
        if employee == self.email or employee in self.reads:
            return True
        return shared and any(r.employee.email == employee for r in self.partner_of)

    def may_see_relationship(self, rel_id: str) -> bool:
        """A relationship's meetings and cadence: its employee, its partner, an admin."""
        return self.admin or any(r.id == rel_id for r in (*self.own, *self.partner_of))

    @property
    def known(self) -> bool:
        """Whether the web app has anything for this person at all."""
        return self.admin or self.employee or self.leader or bool(self.reads)


def viewer(settings: Settings, email: str, reads: tuple[str, ...] = ()) -> Viewer:
    """The viewer ``email`` is under ``settings`` (the directory already laid over them),
    who was chosen to read the plans of ``reads``."""
    email = email.strip().lower()
    admins = {a.lower() for a in (settings.web.admins if settings.web else [])}
    own = tuple(r for r in settings.relationships if r.employee.email.lower() == email)
    partner_of = tuple(r for r in settings.relationships if r.partner.email.lower() == email)
    person = settings.people.get(email)
    name = person.name if person is not None else email
    return Viewer(
        email, name, email in admins, own, partner_of, tuple(reads), language_of(settings, email)
    )


def language_of(settings: Settings, email: str) -> str | None:
    """The language ``email``'s mail is written in: their own, else the program's of a
    relationship of theirs (as an employee first), else the global one; None for an
    address that is no person of the config or the directory."""
    person = settings.people.get(email)
    if person is None:
        return None
    if person.language:
        return person.language
    rels = sorted(
        (r for r in settings.relationships if email in (r.employee.email, r.partner.email)),
        key=lambda r: r.employee.email != email,
    )
    return next((r.program.language for r in rels if r.program.language), settings.language)
