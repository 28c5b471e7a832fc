"""Series titles: the Jinja2 templates of the config's ``title:`` keys.

The rules render a title for every booking; the settings render each title once when
the configuration loads, with this same environment, so that a title that cannot
render (a syntax error, an undefined name, an unsafe attribute) fails ``cadence check``
instead of every tick.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from agent.core.model import Person, Program, Relationship, Series, WorkingHours

#: a title is one line: sequences repeated or numbers raised past this are refused, so
#: that rendering a title (at load time too) can never exhaust the memory or the CPU
LIMIT = 10_000


class _TitleEnvironment(SandboxedEnvironment):
    """The sandbox, with ``*`` and ``**`` bounded."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        if op == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError(f"the power {right!r} is too large for a title")
            return operator.pow(left, right)
        for count, item in ((right, left), (left, right)):
            sequence = isinstance(count, int) and isinstance(item, str | list | tuple)
            if sequence and count * max(len(item), 1) > LIMIT:
                raise SecurityError("a repetition that long is not a title")
        return operator.mul(left, right)


_ENV = _TitleEnvironment(autoescape=False, undefined=jinja2.StrictUndefined, trim_blocks=True)


@functools.lru_cache(maxsize=256)
def compile_title(template: str) -> jinja2.Template:
    """Compile a title template; raise jinja2.TemplateSyntaxError on a syntax error."""
    return _ENV.from_string(template)


def render_title(
    template: str, rel: Relationship, stage: str | None, what: str = "", language: str = "en"
) -> str:
    """Render a series' title template; the result is a single line. Besides the people,
    the stage and the role, a template sees ``what`` (the meeting as the organizer's
    language names it: "Development Align", "Entwicklungsgespräch Align") and
    ``language`` (the organizer's, as a BCP 47 tag), so a title can follow the organizer.

    Raises what Jinja2 raises: TemplateSyntaxError, UndefinedError, SecurityError, or
    any error of an expression in the template (a division by zero ...).
    """
    title = compile_title(template).render(
        employee=rel.employee,
        partner=rel.partner,
        stage=stage or "",
        role=rel.role,
        what=what,
        language=language,
    )
    return " ".join(title.split())


def problem(template: str, rel: Relationship, stage: str | None) -> str | None:
    """Why ``template`` does not render for ``rel`` at ``stage``, in a line; None if it does."""
    try:
        render_title(template, rel, stage, what="Development")
    except jinja2.TemplateSyntaxError as exc:
        return f"the title template does not parse: {exc.message} (line {exc.lineno})"
    except jinja2.UndefinedError as exc:
        return (
            f"the title template names something undefined: {exc.message} "
            "(it may use employee, partner, stage, role, what and language)"
        )
    except SecurityError as exc:
        return f"the title template does something unsafe: {exc}"
    except Exception as exc:  # any expression may fail: an error here, not at every tick
        return f"the title template fails to render: {type(exc).__name__}: {exc}"
    return None


def series_problem(series: Series, relationships: list[Relationship]) -> str | None:
    """Render the series' title for each relationship at each of its stages, as every
    booking will: why it fails (with whose relationship), or None."""
    for rel in relationships:
        for stage in series.stages or (None,):
            found = problem(series.title, rel, stage)
            if found:
                at = f" at stage {stage}" if stage else ""
                return f"{found} (for {rel.id}{at})"
    return None


def sample(program: Program) -> Relationship:
    """A relationship to render the titles of a program nobody follows yet."""

    def person(email: str, name: str) -> Person:
        return Person(email=email, name=name, timezone="UTC", working_hours=WorkingHours({}))

    return Relationship(
        person("employee@example.com", "Sample Employee"),
        person("partner@example.com", "Sample Partner"),
        "leader",
        program,
    )
