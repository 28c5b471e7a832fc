"""The partner's pages (leaders, mentors): their relationships, and shared plans.

``/team`` lists each relationship the viewer is the partner of: its status, the next
meeting, what is overdue and the employee's open actions; and the viewer's own load,
their development meetings per week against the programs' caps. ``/plans/<email>`` shows an
employee's plan to its owner, to their partners when the employee shares it, and to
anyone the employee chose as a reader;
``/relationships/<id>`` shows one relationship's cadence to its two people and to
administrators. Anyone else gets 403 and none of the data.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from agent.rules.messages import N_
from agent.web import data
from agent.web.base import Refused, Web, endpoint

NOT_YOURS = N_("you may not see this")


def team(web: Web, request: Request, form: dict[str, str]) -> Response:
    now = web.clock()
    with web.store() as store:
        viewer = web.signed_in(request, store)
        if not viewer.leader:
            raise Refused(403, N_("you are nobody's leader or mentor"))
        settings = web.laid(store)
        cards = data.cards(settings, store, viewer.partner_of, now)
        load = data.load(cards, viewer.partner_of[0].partner.zone, now)
        open_actions = {}
        shared = {}
        for rel in viewer.partner_of:
            email = rel.employee.email
            if email not in open_actions:
                state = data.plan_of(settings, store, email)
                open_actions[email] = data.actions_of(state.plan, store, email).open
                shared[email] = viewer.may_read_plan(email, state.shared)
    return web.page(
        request,
        "team.html.j2",
        viewer=viewer,
        cards=cards,
        open_actions=open_actions,
        shared=shared,
        load=load,
        now=now,
    )


def plan(web: Web, request: Request, form: dict[str, str]) -> Response:
    email = request.path_params["email"].lower()
    with web.store() as store:
        viewer = web.signed_in(request, store)
        if email == viewer.email:
            return RedirectResponse("/me/plan", status_code=303)
        partner = any(r.employee.email == email for r in viewer.partner_of)
        if not partner and email not in viewer.reads:
            raise Refused(403, NOT_YOURS)
        state = data.plan_of(web.laid(store), store, email)
        if not viewer.may_read_plan(email, state.shared):
            raise Refused(403, N_("this plan is not shared with you"))
        actions = data.actions_of(state.plan, store, email)
    return web.page(
        request, "plan_view.html.j2", viewer=viewer, email=email, state=state, actions=actions
    )


def relationship(web: Web, request: Request, form: dict[str, str]) -> Response:
    rel_id = request.path_params["rel"]
    now = web.clock()
    with web.store() as store:
        viewer = web.signed_in(request, store)
        if not viewer.may_see_relationship(rel_id):
            raise Refused(403, NOT_YOURS)
        settings = web.laid(store)
        rels = [r for r in settings.relationships if r.id == rel_id]
        if not rels:
            raise Refused(404, N_("no such relationship"))
        cards = data.cards(settings, store, rels, now)
        meetings = store.meetings(rel_id)
    return web.page(
        request,
        "relationship.html.j2",
        viewer=viewer,
        card=cards[0],
        meetings=meetings[-20:],
        now=now,
    )


def routes(web: Web) -> list[BaseRoute]:
    return [
        Route("/team", endpoint(web, team), methods=["GET"]),
        Route("/plans/{email}", endpoint(web, plan), methods=["GET"]),
        Route("/relationships/{rel:path}", endpoint(web, relationship), methods=["GET"]),
    ]
