"""The container recipe, checked without a Docker engine: the Dockerfile's install step
runs in a fresh virtualenv (from the wheels ``make test`` fetches first, so nothing here
touches the network), and ``cadence serve --check`` starts from it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
WHEELS = ROOT / ".cache" / "wheels"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (DOCKER / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_shape() -> None:
    steps = instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build"), froms
    final = steps[[i for i, (w, _) in enumerate(steps) if w == "FROM"][1] :]
    words = dict(final)
    assert words["USER"].split(":")[0] == "cadence"
    assert re.search(r"useradd .*--uid 10001", words["RUN"])
    assert words["VOLUME"] == '["/data"]'
    assert "CADENCE_CONFIG=/config/cadence.yaml" in words["ENV"]
    assert "/opt/cadence/bin" in words["ENV"]
    assert words["HEALTHCHECK"].endswith('CMD ["cadence", "health"]')
    assert words["ENTRYPOINT"] == '["cadence"]' and words["CMD"] == '["serve"]'
    assert "COPY --from=build /opt/cadence /opt/cadence" in [
        f"COPY {a}" for w, a in final if w == "COPY"
    ]


def test_compose_mounts() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    service = compose["services"]["cadence"]
    assert "cadence-data:/data" in service["volumes"]
    assert "./cadence.yaml:/config/cadence.yaml:ro" in service["volumes"]
    assert all(v.endswith(":ro") for v in service["volumes"] if v.startswith("./"))
    assert service["secrets"] and set(service["secrets"]) <= set(compose["secrets"])
    assert "cadence-data" in compose["volumes"]
    assert service["build"]["dockerfile"] == "docker/Dockerfile"


@pytest.mark.slow
def test_image_install_step_and_serve_check(tmp_path: Path) -> None:
    if not (WHEELS / ".done").exists():
        pytest.skip("no wheelhouse: `make test` (or `make .cache/wheels/.done`) fetches it once")
    steps = instructions()
    build = steps[: [i for i, (w, _) in enumerate(steps) if w == "FROM"][1]]
    assert ("WORKDIR", "/src") in build
    # the build stage sees only what it copies: copy the same into a folder of our own
    src = tmp_path / "src"
    src.mkdir()
    for word, args in build:
        if word == "COPY":
            *sources, target = args.split()
            dest = src / target.removeprefix("./")
            for name in sources:
                origin = ROOT / name
                into = dest / origin.name if target.endswith("/") or len(sources) > 1 else dest
                if origin.is_dir():
                    shutil.copytree(origin, into, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    into.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, into)
    runs = [args for word, args in build if word == "RUN"]
    assert len(runs) == 1, runs
    venv = tmp_path / "opt-cadence"
    command = shlex.split(runs[0].replace("/opt/cadence", str(venv)).replace("/src", str(src)))
    assert command[:2] == ["sh", "docker/install.sh"], command
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "CADENCE_", "PYTHON"))}
    env.update(
        PIP_NO_INDEX="1",
        PIP_NO_COMPILE="1",  # byte-compiling is the slow part and not what is checked
        PIP_FIND_LINKS=str(WHEELS),
        PIP_CONFIG_FILE=os.devnull,
        PYTHON=sys.executable,
    )
    done = subprocess.run(command, cwd=src, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    # only Cadence and its dependencies: not the test tools of the dev install
    listed = (
        subprocess.run(
            [str(venv / "bin" / "pip"), "list", "--format=freeze"],
            capture_output=True,
            text=True,
            env=env,
        )
        .stdout.lower()
        .replace("_", "-")
    )
    assert "cadence-agent==" in listed and "prometheus-client==" in listed
    assert "pytest" not in listed and "mypy" not in listed
    # a configuration as the container sees it: absolute paths under /data
    data = tmp_path / "data"
    config = tmp_path / "config" / "cadence.yaml"
    config.parent.mkdir()
    config.write_text(
        f"store: {data}/cadence.db\n"
        "service: {host: 0.0.0.0, port: 9464}\n"
        f"accounts: {{team: {{provider: local, calendars: {data}/calendars, outbox: {data}/outbox}}}}\n"
        "defaults: {account: team}\n"
        "people: [{email: ana@example.org, timezone: Europe/Berlin}]\n"
    )
    env["CADENCE_CONFIG"] = str(config)
    check = subprocess.run(
        [str(venv / "bin" / "cadence"), "serve", "--check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert "configuration ok" in check.stdout and "0.0.0.0:9464" in check.stdout
    assert not data.exists()  # --check writes nothing
    # and the installed package is complete (templates, rules, the local provider): a demo tick
    demo = subprocess.run(
        [
            str(venv / "bin" / "cadence"),
            "demo",
            str(tmp_path / "demo"),
            "--now",
            "2026-11-23T14:00:00+00:00",
        ],
        cwd=tmp_path,
        env={k: v for k, v in env.items() if k != "CADENCE_CONFIG"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert list((tmp_path / "demo" / "outbox").glob("*.eml"))


def test_the_scaled_profile_runs_a_scheduler_workers_and_their_services() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    scaled = {n for n, s in services.items() if "scaled" in s.get("profiles", [])}
    assert scaled == {"scheduler", "worker", "postgres", "rabbitmq", "redis"}
    assert "profiles" not in services["cadence"]  # the web app and receiver, always
    assert services["scheduler"]["command"] == ["scheduler"]
    assert services["worker"]["command"][0] == "worker"
    assert services["worker"]["deploy"]["replicas"] == "${CADENCE_WORKERS:-2}"
    for name in ("scheduler", "worker", "cadence"):
        env = services[name]["environment"]
        assert {"CADENCE_BROKER", "CADENCE_LOCK", "CADENCE_LIMITS"} <= set(env)
    for name in ("scheduler", "worker"):
        assert "cadence-data:/data" in services[name]["volumes"]  # the shared store
