"""Bad configuration never gives a traceback: always ConfigError with file:line messages."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agent.app.cli import app
from agent.app.demo import PLANS, create_workspace
from agent.core.errors import ConfigError
from agent.settings import config
from agent.settings import idp as plan
from tests.conftest import NOW

LINE = re.compile(r"^.+:\d+: .+: .+$")


_SOURCE: dict[str, str] = {}


def _workspace(tmp: Path) -> Path:
    """A demo workspace whose config the fuzzer mutates (built once, copied as text)."""
    if "text" not in _SOURCE:
        _SOURCE["text"] = create_workspace(tmp / "demo", NOW).read_text()
        return tmp / "demo" / "cadence.yaml"
    (tmp / "demo" / "plans").mkdir(parents=True, exist_ok=True)
    for who, text in PLANS.items():
        (tmp / "demo" / "plans" / f"{who}.yaml").write_text(text)
    path = tmp / "demo" / "cadence.yaml"
    path.write_text(_SOURCE["text"])
    return path


def _load(path: Path, text: str, loader=config.load) -> None:  # type: ignore[no-untyped-def]
    path.write_text(text, encoding="utf-8")
    try:
        loader(path)
    except ConfigError as exc:
        assert exc.errors
        for line in exc.errors:
            assert LINE.match(line), line
            assert line.startswith(str(path))


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
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edits=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_configs_give_clear_errors(tmp_path_factory, edits) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("fuzz")
    source = _workspace(tmp)
    _load(tmp / "demo" / "mutated.yaml", _mutate(source.read_text(), edits))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edits=st.lists(mutation, min_size=1, max_size=4), which=st.sampled_from(sorted(PLANS)))
def test_mutated_plans_give_clear_errors(tmp_path_factory, edits, which) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("plan")
    _load(tmp / "plan.yaml", _mutate(PLANS[which], edits), plan.load)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
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
