"""YAML loading that remembers where every key came from.

Validation errors must name the file, the line and the key path, so a document is
loaded twice from one text: once into plain Python values, once into the node tree
that knows each value's line.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.core.errors import ConfigError


class _Unique(yaml.constructor.SafeConstructor):
    """A SafeConstructor that rejects duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # `? [a, b]`: a list or a mapping as a key
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    "a key must be a plain value, not a list or mapping",
                    key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        """A date YAML resolves but the calendar lacks (2026-02-30) stays text, so the
        schema reports it under its key, as it does any other bad date."""
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, TypeError, AttributeError, OverflowError):
            return str(node.value)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """Name the line of a value an explicit tag cannot build (``!!int x``): PyYAML
        raises a bare ValueError or TypeError for those."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.tag} value {_one_line(str(exc))}", node.start_mark
            ) from None


_Unique.add_constructor(  # type: ignore[type-var]
    "tag:yaml.org,2002:timestamp", _Unique.construct_yaml_timestamp
)


class _UniqueKeyLoader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    _Unique,
    yaml.resolver.Resolver,
):
    """PyYAML's own parser: slow, and the source of every syntax error's words."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Unique.__init__(self)
        yaml.resolver.Resolver.__init__(self)


_CParser: Any
try:
    from yaml._yaml import CParser as _CParser
except ImportError:  # PyYAML built without libyaml
    _CParser = None
_Fast: Any = None
if _CParser is not None:

    class _Fast(_CParser, _Unique, yaml.resolver.Resolver):  # type: ignore[no-redef,misc]
        """libyaml's parser (ten times faster) with the same constructor."""

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            _Unique.__init__(self)
            yaml.resolver.Resolver.__init__(self)


def _parse(loader_class: Any, text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree of ``text`` and the data built from it, in one parse."""
    loader = loader_class(text)
    try:
        root = loader.get_single_node()
        return root, loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()


def _parse_fast(text: str) -> tuple[yaml.Node | None, Any] | None:
    """Parse with libyaml; None when it is missing, the text has characters PyYAML
    refuses, or libyaml finds a problem (PyYAML then words it, as always). A text with
    a tab goes to PyYAML too: libyaml reads ``t<tab>imezone:`` as a key, PyYAML refuses it."""
    if _Fast is None or "\t" in text or yaml.reader.Reader.NON_PRINTABLE.search(text):
        return None
    try:
        return _parse(_Fast, text)
    except yaml.YAMLError:
        return None


@dataclass(frozen=True)
class Source:
    """A loaded YAML document: its data, its node tree and its path."""

    path: Path
    data: Any
    root: yaml.Node | None

    def line(self, loc: Sequence[str | int]) -> int:
        """Return the 1-based line of the deepest node ``loc`` reaches.

        Elements of ``loc`` that name no key (pydantic adds union tags and the names of
        missing fields) are passed over, so the line is that of the nearest parent.
        """
        node = self.root
        if node is None:
            return 1
        line = node.start_mark.line
        for part in loc:
            child = _child(node, part)
            if child is None:
                continue
            key_node, node = child
            line = key_node.start_mark.line
        return line + 1

    def where(self, loc: Sequence[str | int], message: str) -> str:
        return f"{self.path}:{self.line(loc)}: {dotted(loc)}: {_one_line(message)}"


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if str(key_node.value) == str(part):
                return key_node, value_node
    elif (
        isinstance(node, yaml.SequenceNode)
        and isinstance(part, int)
        and 0 <= part < len(node.value)
    ):
        return node.value[part], node.value[part]
    return None


def dotted(loc: Sequence[str | int]) -> str:
    """Render a key path as ``people[0].timezone``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = str(part)
            if not name or not name.isprintable() or name.strip() != name:
                name = repr(name)
            out += f".{name}" if out else name
    return out or "(top)"


#: pydantic's error types that get the user's words instead of pydantic's message
MESSAGES = {"extra_forbidden": "unknown key", "missing": "required key is missing"}


def error_message(err: Mapping[str, Any], more: Mapping[str, str] | None = None) -> str:
    """Word one pydantic error for the user, for ``Source.where``.

    ``more`` adds words for the error types one document knows better; a template may
    name the error's context and input (``{ctx[expected]}``, ``{input!r}``). Any other
    error keeps pydantic's message, without its "Value error, " prefix.
    """
    template = {**MESSAGES, **(more or {})}.get(err["type"])
    if template is None:
        return str(err["msg"]).removeprefix("Value error, ")
    return template.format(**err)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def load(path: Path) -> Source:
    """Read a YAML file; raise ConfigError naming the file and line on any syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}:1: (file): not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}:1: (file): cannot read: {exc}") from None
    try:
        fast = _parse_fast(text)
        root, data = fast if fast is not None else _parse(_UniqueKeyLoader, text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{path}:{line}: (syntax): {_one_line(problem)}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise ConfigError(
            f"{path}:{line}: (syntax): character {exc.character!r} is not allowed in YAML"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}:1: (syntax): {_one_line(str(exc))}") from None
    return Source(path=path, data=data, root=root)
