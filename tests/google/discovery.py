"""Request validation against the discovery documents shipped in google-api-python-client.

The fake server answers 400 for any query parameter or body field that the discovery
document of the API does not define, the way a strict Google front end would, so a
connector that sends a misspelt parameter fails its tests instead of production.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import googleapiclient

DOCUMENTS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"


class Invalid(Exception):
    """A request the API would refuse with 400."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class Method:
    id: str
    http_method: str
    path: str
    pattern: re.Pattern[str]
    names: tuple[str, ...]
    parameters: dict[str, Any]
    request: str | None
    scopes: frozenset[str]


def _walk(resource: dict[str, Any]) -> list[dict[str, Any]]:
    found = list(resource.get("methods", {}).values())
    for sub in resource.get("resources", {}).values():
        found.extend(_walk(sub))
    return found


def _compile(path: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    names: list[str] = []
    regex = ""
    for part in re.split(r"(\{\+?[A-Za-z]+\})", path):
        if part.startswith("{"):
            names.append(part.strip("{}+"))
            regex += "([^/]+)"
        else:
            regex += re.escape(part)
    return re.compile(f"^{regex}$"), tuple(names)


def parse_datetime(value: str) -> datetime:
    """Parse an RFC 3339 timestamp; it must carry an offset."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise Invalid(f"Bad Request: invalid date-time {value!r}") from None
    if parsed.tzinfo is None:
        raise Invalid(f"Bad Request: date-time {value!r} has no offset")
    return parsed


class API:
    """One API's discovery document: its methods, parameters and schemas."""

    def __init__(self, name: str) -> None:
        self.doc: dict[str, Any] = json.loads((DOCUMENTS / f"{name}.json").read_text())
        self.service_path: str = self.doc["servicePath"]
        self.batch_path: str = self.doc.get("batchPath", "batch")
        self.schemas: dict[str, Any] = self.doc["schemas"]
        self.global_parameters: dict[str, Any] = self.doc.get("parameters", {})
        methods = []
        for desc in _walk(self.doc):
            pattern, names = _compile(self.service_path + desc["path"])
            methods.append(
                Method(
                    id=desc["id"],
                    http_method=desc["httpMethod"],
                    path=desc["path"],
                    pattern=pattern,
                    names=names,
                    parameters=desc.get("parameters", {}),
                    request=desc.get("request", {}).get("$ref"),
                    scopes=frozenset(desc.get("scopes", ())),
                )
            )
        # literal path segments win over parameters ("events/import" before "{eventId}")
        self.methods = sorted(methods, key=lambda m: len(m.names))

    def match(self, http_method: str, path: str) -> tuple[Method, dict[str, str]] | None:
        """Find the method serving ``path`` (without the leading slash)."""
        for method in self.methods:
            if method.http_method != http_method:
                continue
            found = method.pattern.match(path)
            if found:
                values = [urllib.parse.unquote(v) for v in found.groups()]
                return method, dict(zip(method.names, values, strict=True))
        return None

    def check_query(self, method: Method, query: dict[str, list[str]]) -> dict[str, Any]:
        """Validate the query string; return typed values (lists for repeated ones)."""
        typed: dict[str, Any] = {}
        for name, values in query.items():
            spec = method.parameters.get(name)
            if spec is None or spec.get("location") != "query":
                spec = self.global_parameters.get(name)
            if spec is None:
                raise Invalid(f"Unknown parameter: {name!r}", "badRequest")
            if len(values) > 1 and not spec.get("repeated"):
                raise Invalid(f"Parameter {name!r} is not repeated", "badRequest")
            converted = [self._convert(name, spec, v) for v in values]
            typed[name] = converted if spec.get("repeated") else converted[0]
        for name, spec in method.parameters.items():
            if spec.get("required") and spec.get("location") == "query" and name not in typed:
                raise Invalid(f"Required parameter: {name}", "required")
        return typed

    def _convert(self, name: str, spec: dict[str, Any], value: str) -> Any:
        kind = spec.get("type")
        if kind == "boolean":
            if value not in ("true", "false"):
                raise Invalid(f"Invalid boolean value for {name!r}: {value!r}")
            return value == "true"
        if kind == "integer":
            try:
                number = int(value)
            except ValueError:
                raise Invalid(f"Invalid integer value for {name!r}: {value!r}") from None
            if "minimum" in spec and number < int(spec["minimum"]):
                raise Invalid(f"Invalid value for {name!r}: {number} < {spec['minimum']}")
            if "maximum" in spec and number > int(spec["maximum"]):
                raise Invalid(f"Invalid value for {name!r}: {number} > {spec['maximum']}")
            return number
        if "enum" in spec and value not in spec["enum"]:
            raise Invalid(f"Invalid value for {name!r}: {value!r}")
        if spec.get("format") == "date-time":
            parse_datetime(value)
        return value

    def check_body(self, method: Method, body: Any) -> None:
        """Validate a JSON request body against the method's request schema."""
        if method.request is None:
            if body is not None:
                raise Invalid("This method takes no request body", "badRequest")
            return
        if not isinstance(body, dict):
            raise Invalid("The request body must be a JSON object", "parseError")
        self._check({"$ref": method.request}, body, "resource")

    def _check(self, schema: dict[str, Any], value: Any, where: str) -> None:
        if "$ref" in schema:
            schema = self.schemas[schema["$ref"]]
        kind = schema.get("type")
        if kind == "object":
            if not isinstance(value, dict):
                raise Invalid(f"Invalid value at '{where}': expected an object")
            props = schema.get("properties")
            extra = schema.get("additionalProperties")
            for key, item in value.items():
                if props is not None and key in props:
                    self._check(props[key], item, f"{where}.{key}")
                elif extra is not None:
                    self._check(extra, item, f"{where}.{key}")
                else:
                    raise Invalid(
                        f"Invalid JSON payload received. Unknown name {key!r} at '{where}': "
                        "Cannot find field.",
                        "badRequest",
                    )
        elif kind == "array":
            if not isinstance(value, list):
                raise Invalid(f"Invalid value at '{where}': expected a list")
            for i, item in enumerate(value):
                self._check(schema.get("items", {}), item, f"{where}[{i}]")
        elif kind == "string":
            if not isinstance(value, str):
                raise Invalid(f"Invalid value at '{where}': expected a string")
            fmt = schema.get("format")
            if fmt == "date-time":
                parse_datetime(value)
            elif fmt == "date":
                try:
                    date.fromisoformat(value)
                except ValueError:
                    raise Invalid(f"Invalid value at '{where}': bad date {value!r}") from None
            elif fmt == "int64" and not re.fullmatch(r"-?\d+", value):
                raise Invalid(f"Invalid value at '{where}': bad int64 {value!r}")
        elif kind == "integer":
            if not isinstance(value, int) or isinstance(value, bool):
                raise Invalid(f"Invalid value at '{where}': expected an integer")
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise Invalid(f"Invalid value at '{where}': expected a boolean")
        elif kind == "number" and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise Invalid(f"Invalid value at '{where}': expected a number")
