"""Malformed provider responses: an item the connectors cannot read becomes a Skipped
entry (the sync loops catch any exception per item); here the mapping itself is fuzzed
so that a readable-looking item never yields a broken Event."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.connectors import google, microsoft
from tests.factories import person

ANA = person("ana", "Europe/Berlin")

GOOGLE_OK = {
    "id": "abc",
    "iCalUID": "abc@google.com",
    "status": "confirmed",
    "summary": "Development Align",
    "start": {"dateTime": "2026-11-24T10:00:00+01:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2026-11-24T11:00:00+01:00", "timeZone": "Europe/Berlin"},
    "organizer": {"email": "ana@acme.example"},
    "attendees": [{"email": "ben@acme.example", "responseStatus": "declined"}],
    "extendedProperties": {"private": {"cadenceKey": "k"}},
    "sequence": 2,
}
GRAPH_OK = {
    "id": "AAMk",
    "iCalUId": "040000",
    "subject": "Development Align",
    "start": {"dateTime": "2026-11-24T09:00:00.0000000", "timeZone": "UTC"},
    "end": {"dateTime": "2026-11-24T10:00:00.0000000", "timeZone": "UTC"},
    "isAllDay": False,
    "isCancelled": False,
    "showAs": "busy",
    "isOrganizer": True,
    "organizer": {"emailAddress": {"address": "ana@acme.example"}},
    "attendees": [
        {"emailAddress": {"address": "ben@acme.example"}, "status": {"response": "accepted"}}
    ],
}

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.text(min_size=5000, max_size=6000),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.sampled_from(["9999-99-99T99:99:99", "2026-13-01", "+275760-09-13T00:00:00Z", "not a date"]),
)


def mutated(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        out = [prefix] if prefix else []
        if isinstance(node, dict):
            for k, v in node.items():
                out += paths(v, (*prefix, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out += paths(v, (*prefix, i))
        return out

    all_paths = paths(base)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        import copy

        item = copy.deepcopy(base)
        for _ in range(draw(st.integers(1, 4))):
            path = draw(st.sampled_from(all_paths))
            parent: Any = item
            try:
                for part in path[:-1]:
                    parent = parent[part]
                if draw(st.booleans()) and isinstance(parent, dict):
                    parent.pop(path[-1], None)
                else:
                    parent[path[-1]] = draw(junk)
            except (KeyError, IndexError, TypeError):
                continue
        return item

    return build()


@settings(max_examples=400, deadline=None)
@given(mutated(GOOGLE_OK))
def test_google_items(item: dict[str, Any]) -> None:
    try:
        event = google.to_event(ANA, item)
    except Exception:
        return  # skipped with a reason by the sync loop
    assert event.start.tzinfo is not None and event.start <= event.end


@settings(max_examples=400, deadline=None)
@given(mutated(GRAPH_OK))
def test_graph_items(item: dict[str, Any]) -> None:
    try:
        event = microsoft.to_event(ANA, item)
    except Exception:
        return  # skipped with a reason by the sync loop
    assert event.start.tzinfo is not None and event.start <= event.end
