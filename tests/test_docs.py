"""The docs hold together: the README names every command and stays short, the
configuration reference names every key, and every relative link leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel

from agent.app.cli import app
from agent.settings.config import ConfigFile

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
README_MAX_LINES = 250


def _commands() -> list[str]:
    names = [c.name or c.callback.__name__ for c in app.registered_commands]  # type: ignore[union-attr]
    for group in app.registered_groups:
        for sub in group.typer_instance.registered_commands:
            names.append(f"{group.name} {sub.name}")
    return names


def test_every_command_is_in_the_readme() -> None:
    missing = [n for n in _commands() if f"cadence {n}" not in README]
    assert not missing


def test_the_readme_stays_short() -> None:
    lines = len(README.splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move details into docs/"
    )


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        out += _models(arg)
    if get_origin(annotation) is not None and hasattr(annotation, "__metadata__"):
        out += _models(annotation.__origin__)
    return out


def _keys(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    if model in seen:
        return set()
    seen.add(model)
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(field.alias or name)
        for sub in _models(field.annotation):
            keys |= _keys(sub, seen)
    return keys


def test_every_config_key_is_in_the_configuration_reference() -> None:
    missing = sorted(
        k
        for k in _keys(ConfigFile, set())
        if f"`{k}`" not in CONFIGURATION
        and f".{k}`" not in CONFIGURATION
        and f"{k}:" not in CONFIGURATION
    )
    assert not missing


# --- links -------------------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def _pages() -> list[Path]:
    return [
        ROOT / "README.md",
        ROOT / "docker" / "README.md",
        *sorted((ROOT / "docs").rglob("*.md")),
    ]


def _prose(text: str) -> str:
    """Drop code blocks and inline code, where brackets are syntax, not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped,
    spaces as hyphens, a repeated heading numbered -1, -2 …"""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def _links() -> list[tuple[Path, str]]:
    return [
        (page, target) for page in _pages() for target in LINK.findall(_prose(page.read_text()))
    ]


def test_the_pages_have_links_to_check() -> None:
    targets = {target for _, target in _links()}
    assert "docs/configuration.md" in targets
    assert "docs/architecture.md" in targets
    assert "config/local.yaml" in targets


@pytest.mark.parametrize(
    ("page", "target"),
    [
        pytest.param(page, target, id=f"{page.relative_to(ROOT)}->{target}")
        for page, target in _links()
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto: …
    ],
)
def test_every_relative_link_leads_somewhere(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{page.relative_to(ROOT)}: {target}: no such file"
    assert dest.is_relative_to(ROOT), f"{page.relative_to(ROOT)}: {target}: outside the project"
    if anchor and dest.suffix == ".md":
        assert anchor in _anchors(dest), f"{page.relative_to(ROOT)}: {target}: no such heading"
