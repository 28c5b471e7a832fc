"""Bad configuration never gives a traceback: always ConfigError with file:line messages.

And what passes goes on to work: a configuration the checks accept (its plans too)
plans a tick without an error. The mutations are noise in the text (any key) and
values aimed at what once passed the checks and failed every tick: title templates,
dates, durations, stages, the tick, addresses, plan files.

``CONFIG_FUZZ_EXAMPLES`` sets the examples of each property (``make test`` runs a few
hundred in all; ``make fuzz-config`` 10,000); the properties that tick run a tenth.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agent.app.cli import app
from agent.app.demo import PLANS, create_workspace
from agent.core.errors import ConfigError
from agent.settings import config, yamlsource
from agent.settings import idp as plan
from agent.tick.engine import Engine
from tests.conftest import NOW

LINE = re.compile(r"^.+:\d+: .+: .+$")
#: examples per property: 100 by default, 10,000 in `make fuzz-config`
EXAMPLES = int(os.environ.get("CONFIG_FUZZ_EXAMPLES", "100"))
#: the properties that run a tick after loading take a tenth
TICKING = max(10, EXAMPLES // 10)


_SOURCE: dict[str, Path] = {}


def _workspace(tmp: Path) -> Path:
    """A demo workspace whose config the fuzzer mutates (built once, then copied)."""
    if "folder" not in _SOURCE:  # kept apart: examples write into their copies only
        _SOURCE["folder"] = create_workspace(tmp / "source", NOW).parent
    shutil.copytree(_SOURCE["folder"], tmp / "demo", ignore=shutil.ignore_patterns("var"))
    return tmp / "demo" / "cadence.yaml"


def _load(path: Path, text: str, loader=config.load):  # type: ignore[no-untyped-def]
    """Load ``text`` from ``path``: the value, or None after a well-formed ConfigError."""
    path.write_text(text, encoding="utf-8")
    try:
        return loader(path)
    except ConfigError as exc:
        assert exc.errors
        for line in exc.errors:
            assert LINE.match(line), line
            assert line.startswith(str(path))
        return None


mutation = st.tuples(
    st.sampled_from(["delete", "duplicate", "swap", "insert", "replace", "indent", "truncate"]),
    st.integers(min_value=0, max_value=10_000),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
)


def _mutate(text: str, edits: list[tuple[str, int, str]]) -> str:
    lines = text.splitlines()
    for kind, at, noise in edits:
        if not lines:
            break
        i = at % len(lines)
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = (at // 7) % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "insert":
            lines.insert(i, noise)
        elif kind == "replace":
            k = at % (len(lines[i]) + 1)
            lines[i] = lines[i][:k] + noise + lines[i][k + len(noise) :]
        elif kind == "indent":
            lines[i] = "  " + lines[i]
        elif kind == "truncate":
            lines[i] = lines[i][: at % (len(lines[i]) + 1)]
    return "\n".join(lines) + "\n"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(edits=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_configs_give_clear_errors(tmp_path_factory, edits) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("fuzz")
    source = _workspace(tmp)
    _load(tmp / "demo" / "mutated.yaml", _mutate(source.read_text(), edits))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(edits=st.lists(mutation, min_size=1, max_size=4), which=st.sampled_from(sorted(PLANS)))
def test_mutated_plans_give_clear_errors(tmp_path_factory, edits, which) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("plan")
    _load(tmp / "plan.yaml", _mutate(PLANS[which], edits), plan.load)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_arbitrary_yaml_documents(tmp_path_factory, data) -> None:  # type: ignore[no-untyped-def]
    import yaml

    tmp = tmp_path_factory.mktemp("doc")
    _load(
        tmp / "c.yaml",
        yaml.safe_dump({"accounts": data, "people": data} if isinstance(data, dict) else data),
    )


def test_the_cli_exits_2_on_a_mutated_config(tmp_path: Path) -> None:
    source = _workspace(tmp_path)
    broken = source.with_name("broken.yaml")
    broken.write_text(
        source.read_text().replace("people:", "people:\n  - 42\n  - {email: nope}", 1)
    )
    result = CliRunner().invoke(app, ["check", "--config", str(broken)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert all(LINE.match(line) for line in result.output.strip().splitlines())


# --- values aimed at what once passed the checks and failed every tick ----------------

_NAMES = [
    "employee", "partner", "stage", "role", "employee.first_name", "partner.name",
    "employee.email", "employee.timezone", "employe", "nobody", "employee.__class__",
    "partner.__init__.__globals__", "stage | title", "stage | upper", "role[0]", "1 / 0",
    "1 // 0", "'x' * 99999999", "9 ** 9 ** 9", "employee.name[99]", "range(3) | list",
    "{'align': 1}[stage]", "employee.zone", "none", "lipsum()", "cycler",
]  # fmt: skip
_PIECES = st.one_of(
    st.text(alphabet="abc &:-{}%#'\"|()[]", max_size=6),
    st.sampled_from(_NAMES).map(lambda n: "{{ " + n + " }}"),
    st.sampled_from(["{% if stage %}", "{% else %}", "{% endif %}", "{% for x in y %}", "{#"]),
    st.sampled_from(["{{", "}}", "{%", "%}", "{{ }}", "{{ stage |"]),
)
_TITLE = st.lists(_PIECES, min_size=1, max_size=5).map("".join)
_NUMBER = st.one_of(
    st.integers(0, 120), st.integers(0, 10**6), st.integers(0, 10**20), st.just(3650)
)
_DURATION = st.lists(st.tuples(_NUMBER, st.sampled_from("smhdw")), min_size=1, max_size=3).map(
    lambda parts: "".join(f"{n}{u}" for n, u in parts)
)
_DATE = st.tuples(st.integers(0, 99999), st.integers(0, 14), st.integers(0, 40)).map(
    lambda d: f"{d[0]:04d}-{d[1]:02d}-{d[2]:02d}"
)
_STAGES = st.lists(
    st.sampled_from(["align", "advance", "amplify", "advocate", "adapt", "Align", "''"]),
    max_size=5,
).map(lambda xs: "[" + ", ".join(xs) + "]")
_LOCAL = st.lists(st.sampled_from([*"abz09._-+/\\@", "..", "\x01", "%2e", "~"]), max_size=8).map(
    "".join
)
_ADDRESS = st.tuples(_LOCAL, st.sampled_from(["acme.example", "x", "..", "a/b", ""])).map(
    lambda p: f"{p[0]}@{p[1]}"
)
_YAML_QUOTE = st.sampled_from(["{}", "'{}'", '"{}"'])

#: (a pattern matched in the demo config, what replaces the match)
_SITES = {
    "title": (r'title: "[^"\n]*"', _TITLE.map(lambda v: "title: '" + v.replace("'", "''") + "'")),
    "every": (r"every: \w+", _DURATION.map(lambda v: f"every: {v}")),
    "duration": (r"duration: \w+", _DURATION.map(lambda v: f"duration: {v}")),
    "horizon": (r"horizon: \w+", _DURATION.map(lambda v: f"horizon: {v}")),
    "lead_time": (r"lead_time: \w+", _DURATION.map(lambda v: f"lead_time: {v}")),
    "buffer": (r"buffer: \w+", _DURATION.map(lambda v: f"buffer: {v}")),
    "lapse_grace": (r"lapse_grace: \w+", _DURATION.map(lambda v: f"lapse_grace: {v}")),
    "agenda": (r"before: \w+", _DURATION.map(lambda v: f"before: {v}")),
    "recap": (r"after: \w+", _DURATION.map(lambda v: f"after: {v}")),
    "tick": (r"tick: \w+", _DURATION.map(lambda v: f"tick: {v}")),
    "stages": (r"stages: \[[^\]]*\]", _STAGES.map(lambda v: f"stages: {v}")),
    "closed": (
        r"country: DE,",
        st.lists(_DATE, max_size=3).map(lambda ds: f"country: DE, closed: [{', '.join(ds)}],"),
    ),
}


def _address_edit(text: str, draw_address: str, quote: str) -> str:
    """Give Ben another address everywhere (the relationships follow him)."""
    return text.replace("ben@acme.example", quote.format(draw_address))


@st.composite
def _aimed(draw: st.DrawFn, text: str) -> str:
    for _ in range(draw(st.integers(1, 3))):
        site = draw(st.sampled_from(sorted([*_SITES, "address"])))
        if site == "address":
            text = _address_edit(text, draw(_ADDRESS), draw(_YAML_QUOTE))
            continue
        pattern, values = _SITES[site]
        found = list(re.finditer(pattern, text))
        if not found:
            continue
        match = found[draw(st.integers(0, len(found) - 1))]
        text = text[: match.start()] + draw(values) + text[match.end() :]
    return text


def _ticks(settings: config.Settings) -> None:
    """A configuration the checks accept plans a tick with no error (as `cadence plan`)."""
    with Engine(settings) as engine:
        report = engine.tick(NOW, dry_run=True)
    assert not report.errors, report.errors


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_aimed_values_give_clear_errors(tmp_path_factory, data) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("aimed")
    source = _workspace(tmp)
    _load(tmp / "demo" / "aimed.yaml", data.draw(_aimed(source.read_text())))


@settings(
    max_examples=TICKING, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_what_passes_the_checks_ticks(tmp_path_factory, data) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("ticks")
    source = _workspace(tmp)
    loaded = _load(tmp / "demo" / "aimed.yaml", data.draw(_aimed(source.read_text())))
    if loaded is not None:
        assert loaded.tick >= timedelta(minutes=1)
        _ticks(loaded)


_PLAN_SITES = {
    "due": (r"due: [0-9-]+", _DATE.map(lambda v: f"due: {v}")),
    "title": (r"title: [^,}\n]+", st.text(max_size=12).map(lambda v: f"title: {v!r}")),
    "level": (r"level: \w+", st.text(max_size=8).map(lambda v: f"level: {v}")),
    "status": (
        r"status: \w+",
        st.sampled_from(["open", "done", "x", "''"]).map("status: {}".format),
    ),
}


@settings(
    max_examples=TICKING, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), which=st.sampled_from(sorted(PLANS)))
def test_aimed_plan_values_are_errors_or_used(tmp_path_factory, data, which) -> None:  # type: ignore[no-untyped-def]
    """A plan value is a file:line error of `cadence check`, or the plan loads and the
    tick quotes it without an error."""
    tmp = tmp_path_factory.mktemp("plans")
    source = _workspace(tmp)
    text = PLANS[which]
    for _ in range(data.draw(st.integers(1, 3))):
        pattern, values = _PLAN_SITES[data.draw(st.sampled_from(sorted(_PLAN_SITES)))]
        found = list(re.finditer(pattern, text))
        if found:
            match = found[data.draw(st.integers(0, len(found) - 1))]
            text = text[: match.start()] + data.draw(values) + text[match.end() :]
    path = tmp / "demo" / "plans" / f"{which}.yaml"
    if _load(path, text, plan.load) is not None:
        _ticks(config.load(source))


def _lines(node: Any) -> list[tuple[str, int]]:
    """Every node's tag and line, depth first."""
    out = [(node.tag, node.start_mark.line)]
    if isinstance(node.value, list):
        for item in node.value:
            for part in item if isinstance(item, tuple) else (item,):
                out += _lines(part)
    return out


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(edits=st.lists(mutation, min_size=1, max_size=4))
@example(edits=[("replace", 1, "\t")])  # a tab in a key: libyaml took it, PyYAML does not
def test_libyaml_reads_what_pyyaml_reads(tmp_path_factory, edits) -> None:  # type: ignore[no-untyped-def]
    """The fast parser is used only where it agrees with PyYAML: the same data, the same
    lines; anything else goes to PyYAML, whose words the errors keep."""
    path = _workspace(tmp_path_factory.mktemp("yaml"))
    text = _mutate(path.read_text(), edits)
    fast = yamlsource._parse_fast(text)
    if fast is None:
        return
    root, data = yamlsource._parse(yamlsource._UniqueKeyLoader, text)
    assert repr(fast[1]) == repr(data)
    assert (fast[0] is None) == (root is None)
    if root is not None:
        assert _lines(fast[0]) == _lines(root)
