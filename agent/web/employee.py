"""The employee's pages: their cadence, meetings and actions; their plan, to edit.

A plan saved here goes to the store with a history row (who, when, which keys), after
the same check as ``cadence check``; errors are shown beside their fields.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from agent.core.plan import normalize
from agent.rules.messages import N_
from agent.store.plans import Change, Conflict, PlanRows
from agent.store.readers import Reader, ReaderRows
from agent.store.sqlite import Store
from agent.views import packet as packet_view
from agent.web import data, forms
from agent.web.access import Viewer
from agent.web.base import INLINE_STYLES_CSP, Refused, Web, endpoint


def home(web: Web, request: Request, form: dict[str, str]) -> Response:
    with web.store() as store:
        viewer = web.signed_in(request, store)
        people = web.laid(store).people
    readable = [(e, people[e].name if e in people else e) for e in viewer.reads]
    return web.page(request, "home.html.j2", viewer=viewer, readable=readable)


def cadence(web: Web, request: Request, form: dict[str, str]) -> Response:
    now = web.clock()
    with web.store() as store:
        viewer = _employee(web, request, store)
        settings = web.laid(store)
        state = data.plan_of(settings, store, viewer.email)
        actions = data.actions_of(state.plan, store, viewer.email)
        cards = data.cards(settings, store, viewer.own, now)
        resumes = PlanRows(store).pauses().get(viewer.email)
    return web.page(
        request,
        "cadence.html.j2",
        viewer=viewer,
        cards=cards,
        actions=actions,
        now=now,
        paused=resumes if resumes is not None and resumes > now else None,
        zone=viewer.own[0].employee.zone,
        pause_error=request.query_params.get("pause") == "bad",
    )


def pause(web: Web, request: Request, form: dict[str, str]) -> Response:
    """Pause the viewer's cadence for a leave, up to and including a day; or resume it."""
    now = web.clock()
    with web.store() as store:
        viewer = _employee(web, request, store)
        if form.get("resume"):
            PlanRows(store).pause(viewer.email, None, now)
            return RedirectResponse("/me#pause", status_code=303)
        try:
            last = date.fromisoformat(form.get("until", ""))
        except ValueError:
            return RedirectResponse("/me?pause=bad#pause", status_code=303)
        zone = viewer.own[0].employee.zone
        resumes = datetime.combine(last + timedelta(days=1), time(0), zone)
        if resumes <= now or last > (now + timedelta(days=366)).date():
            return RedirectResponse("/me?pause=bad#pause", status_code=303)
        PlanRows(store).pause(viewer.email, resumes, now)
    return RedirectResponse("/me#pause", status_code=303)


def tick(web: Web, request: Request, form: dict[str, str]) -> Response:
    """Tick off one of the viewer's open actions (by its title)."""
    now = web.clock()
    with web.store() as store:
        viewer = _employee(web, request, store)
        state = data.plan_of(web.laid(store), store, viewer.email)
        actions = data.actions_of(state.plan, store, viewer.email)
        wanted = normalize(form.get("action", ""))
        found = next((a for a in actions.open if normalize(a.title) == wanted), None)
        if found is None:
            raise Refused(404, N_("no such open action"))
        data.tick_off(store, viewer.email, found, now)
    return RedirectResponse("/me#actions", status_code=303)


def packet(web: Web, request: Request, form: dict[str, str]) -> Response:
    """The viewer's review packet since 1 January (or ``?since=``), as an HTML file."""
    now = web.clock()
    try:
        since = date.fromisoformat(request.query_params.get("since", f"{now.year}-01-01"))
    except ValueError:
        raise Refused(400, N_("since: give a date as YYYY-MM-DD")) from None
    with web.store() as store:
        viewer = _employee(web, request, store)
        html = packet_view.render(
            packet_view.collect(web.settings, store, viewer.email, since, now),
            "html",
            web.settings.templates,
        )
    name = f"review-packet-{viewer.email.split('@')[0]}-{since.isoformat()}.html"
    return HTMLResponse(
        html,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Security-Policy": INLINE_STYLES_CSP,
        },
    )


def _employee(web: Web, request: Request, store: Store) -> Viewer:
    viewer = web.signed_in(request, store)
    if not viewer.employee:
        raise Refused(403, N_("you have no development relationship of your own"))
    return viewer


def show_plan(web: Web, request: Request, form: dict[str, str]) -> Response:
    with web.store() as store:
        viewer = _employee(web, request, store)
        state = data.plan_of(web.laid(store), store, viewer.email)
        history = PlanRows(store).history(viewer.email, 20)
        readers = ReaderRows(store).of(viewer.email)
    return _plan_page(
        web, request, viewer, state, forms.fields(state.plan), {}, history, readers=readers
    )


#: the most readers one plan may have, so that "shared with a few" stays a few
MAX_READERS = 20


def choose_readers(web: Web, request: Request, form: dict[str, str]) -> Response:
    """Name, one by one, who else may read the viewer's plan: people Cadence knows."""
    now = web.clock()
    with web.store() as store:
        viewer = _employee(web, request, store)
        _ = web.gettext(web.language(request, viewer))
        people = web.laid(store).people
        wanted: set[str] = set()
        errors: list[str] = []
        lines = form.get("readers", "").splitlines()
        for number, line in enumerate(lines, 1):
            email = line.strip().lower()
            if not email:
                continue
            said = {"n": number, "email": email}
            if email == viewer.email:
                errors.append(_("line %(n)s: %(email)s is you; you always read your plan") % said)
            elif email not in people:
                errors.append(_("line %(n)s: %(email)s is not someone Cadence knows") % said)
            else:
                wanted.add(email)
        if len(wanted) > MAX_READERS:
            errors.append(_("at most %(n)s readers: name fewer") % {"n": MAX_READERS})
        if not errors:
            ReaderRows(store).choose(viewer.email, wanted, viewer.email, now)
            return RedirectResponse("/me/plan?readers=1#readers", status_code=303)
        state = data.plan_of(web.laid(store), store, viewer.email)
        history = PlanRows(store).history(viewer.email, 20)
        readers = ReaderRows(store).of(viewer.email)
    return _plan_page(
        web, request, viewer, state, forms.fields(state.plan), {}, history, status=422,
        readers=readers, readers_text=form.get("readers", ""), readers_errors=errors,
    )  # fmt: skip


def save_plan(web: Web, request: Request, form: dict[str, str]) -> Response:
    now = web.clock()
    with web.store() as store:
        viewer = _employee(web, request, store)
        state = data.plan_of(web.laid(store), store, viewer.email)
        actions = [a.model_dump(mode="json") for a in (state.plan.actions if state.plan else [])]
        plan, errors = forms.check(form, actions, web.gettext(web.language(request, viewer)))
        shared = bool(form.get("shared"))
        if plan is not None:
            try:
                version = int(form.get("version", "0"))
            except ValueError:
                version = -1
            try:
                PlanRows(store).save(
                    viewer.email, plan, by=viewer.email, how="web", now=now, shared=shared,
                    version=version,
                )  # fmt: skip
            except Conflict:
                current = PlanRows(store).get(viewer.email)
                _ = web.gettext(web.language(request, viewer))
                errors = {
                    "": [
                        _(
                            "The plan was changed since you opened it (by %(who)s): reload and edit again."
                        )
                        % {"who": current.updated_by if current else "?"}
                    ]
                }
            else:
                return RedirectResponse("/me/plan?saved=1", status_code=303)
        history = PlanRows(store).history(viewer.email, 20)
        readers = ReaderRows(store).of(viewer.email)
    state = data.PlanState(state.plan, shared, state.version, state.source, state.problem)
    return _plan_page(
        web, request, viewer, state, dict(form), errors, history, status=422, readers=readers
    )


def _plan_page(
    web: Web,
    request: Request,
    viewer: Viewer,
    state: data.PlanState,
    fields: dict[str, str],
    errors: dict[str, list[str]],
    history: list[Change],
    status: int = 200,
    readers: list[Reader] | None = None,
    readers_text: str | None = None,
    readers_errors: list[str] | None = None,
) -> Response:
    readers = readers or []
    if readers_text is None:
        readers_text = "\n".join(r.email for r in readers)
    return web.page(
        request,
        "plan_edit.html.j2",
        status,
        viewer=viewer,
        state=state,
        fields=fields,
        errors=errors,
        goals=range(forms.GOALS),
        history=history,
        saved=request.query_params.get("saved") == "1",
        readers=readers,
        readers_text=readers_text,
        readers_errors=readers_errors or [],
        readers_saved=request.query_params.get("readers") == "1",
    )


def routes(web: Web) -> list[BaseRoute]:
    return [
        Route("/", endpoint(web, home), methods=["GET"]),
        Route("/me", endpoint(web, cadence), methods=["GET"]),
        Route("/me/actions", endpoint(web, tick), methods=["POST"]),
        Route("/me/pause", endpoint(web, pause), methods=["POST"]),
        Route("/me/packet", endpoint(web, packet), methods=["GET"]),
        Route("/me/plan", endpoint(web, show_plan), methods=["GET"]),
        Route("/me/plan", endpoint(web, save_plan), methods=["POST"]),
        Route("/me/readers", endpoint(web, choose_readers), methods=["POST"]),
    ]
