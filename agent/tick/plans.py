"""Each employee's development plan and the actions recorded from replies, for a tick.

Plans are YAML files read when they change (by modification time), so a quiet tick
costs a ``stat`` per employee. A plan kept in the store (the web app's, or one that
``cadence plan-import`` moved there) wins over the file; it is parsed again only when
its version changes. A plan that does not load is a warning of every tick
(printed, on /healthz, in ``cadence status``) and the mails go out without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from agent.core.errors import CadenceError
from agent.core.model import Person
from agent.rules import replies
from agent.settings import idp
from agent.settings.config import Settings
from agent.store.plans import PlanRows
from agent.store.rows import among
from agent.store.sqlite import Store


def plan_path(settings: Settings, person: Person) -> Path | None:
    """The person's ``plan:``, else ``plans/<email>.yaml`` next to the config if it exists."""
    if person.plan:
        return Path(person.plan)
    default = settings.resolve(idp.default_path(person.email))
    return default if default.exists() else None


def recorded_actions(store: Store, employee: str) -> list[replies.Action]:
    return [_action(r) for r in store.actions(employee)]


def recorded_by_employee(
    store: Store, employees: Sequence[str] | None = None
) -> dict[str, list[replies.Action]]:
    """Every employee's recorded actions (or these employees'), read in one query."""
    out: dict[str, list[replies.Action]] = {}
    for row in store.all_actions(employees):
        out.setdefault(row["employee"], []).append(_action(row))
    return out


def _action(row: Mapping[str, Any]) -> replies.Action:
    return replies.Action(
        title=row["title"],
        goal=row["goal"],
        due=date.fromisoformat(row["due"]) if row["due"] else None,
        status=row["status"],
        source="reply",
        changed=row["updated_at"],
    )


def plan_warning(email: str, problem: str) -> str:
    """One line that says a plan file is not used, and why (its ``file:line`` errors)."""
    return (
        f"the plan of {email} does not load, so agendas and recaps go out without it "
        f"(fix it; `cadence check` shows every error): {'; '.join(problem.splitlines())}"
    )


def problems(settings: Settings) -> dict[str, str]:
    """Why each employee's plan file cannot be used, for those whose plan does not load."""
    employees = {r.employee.email: r.employee for r in settings.relationships}
    return Plans().load(settings, employees.values())[1]


class Plans:
    """Plans by employee, read again only when their file changes."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[int, idp.Plan | None, str | None]] = {}
        self._stored: dict[str, tuple[int, idp.Plan]] = {}

    def load(
        self,
        settings: Settings,
        people: Iterable[Person],
        store: Store | None = None,
        few: bool = False,
    ) -> tuple[dict[str, idp.Plan | None], dict[str, str]]:
        """Return each person's plan (None without one) and why any could not be used;
        with ``store``, a plan kept there wins over the person's file (``few``: only
        ``people``'s stored plans are looked at, a worker's unit's)."""
        plans: dict[str, idp.Plan | None] = {}
        problems: dict[str, str] = {}
        people = list(people)
        only = [p.email for p in people] if few else None
        stored = self._from_store(store, only) if store is not None else {}
        for person in people:
            if person.email in stored:
                plans[person.email] = stored[person.email]
                continue
            path = plan_path(settings, person)
            plan, problem = self._read(path) if path else (None, None)
            plans[person.email] = plan
            if problem:
                problems[person.email] = problem
        return plans, problems

    def _from_store(self, store: Store, only: Sequence[str] | None) -> dict[str, idp.Plan]:
        sql = "SELECT employee, version FROM plans WHERE 1 = 1"
        versions = {
            r["employee"]: r["version"] for r in store.db.query(*among(sql, "employee", only))
        }
        rows = PlanRows(store)
        for email, version in versions.items():
            cached = self._stored.get(email)
            if cached is None or cached[0] != version:
                found = rows.get(email)
                if found is not None:
                    self._stored[email] = (found.version, found.plan)
        return {e: self._stored[e][1] for e in versions if e in self._stored}

    def _read(self, path: Path) -> tuple[idp.Plan | None, str | None]:
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            stamp = -1
        cached = self._cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        try:
            plan, problem = idp.load(path), None
        except CadenceError as exc:
            plan, problem = None, str(exc)
        self._cache[path] = (stamp, plan, problem)
        return plan, problem
