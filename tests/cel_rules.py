"""The API server's handling of a ModelDeployment, emulated from crds/modeldeployment.yaml alone.

What the API server does on create, in order: apply the schema's defaults, check the structural schema
(here with `jsonschema`, plus kubectl's strict field validation: unknown fields are errors), then evaluate
every `x-kubernetes-validations` rule with CEL (here PyPI cel-python). Two Kubernetes specifics need a shim:
- Go's RE2 `$` matches only at the very end; Python's also before a final newline, so patterns are checked
  with `$` read as `\\Z`.
- Kubernetes-only CEL functions used by the CRD: `isSorted()` (list library) and `quantity()` with
  `compareTo()` (quantity library). Numbers under `type: number` are CEL doubles, as in Kubernetes.
- `duration()` fails beyond Go's int64 nanoseconds (about 2562047h), as in Kubernetes; cel-python's
  own would accept any length.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Iterator, Mapping
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml
from celpy import celtypes
from celpy.evaluation import CELEvalError

from modeldeploy.quantities import parse_quantity

CRD_PATH = Path(__file__).resolve().parent.parent / "crds" / "modeldeployment.yaml"


@cache
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


def schema() -> dict[str, Any]:
    version: dict[str, Any] = crd()["spec"]["versions"][0]
    openapi: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return openapi


# --- defaulting ---


def apply_defaults(node_schema: Mapping[str, Any], value: Any) -> Any:
    """Structural defaulting: an absent property with a default gets it (then its defaults), recursively."""
    if isinstance(value, dict):
        result = dict(value)
        for name, child in node_schema.get("properties", {}).items():
            if name not in result and "default" in child:
                result[name] = copy.deepcopy(child["default"])
            if name in result:
                result[name] = apply_defaults(child, result[name])
        extra = node_schema.get("additionalProperties")
        if isinstance(extra, dict):
            known = node_schema.get("properties", {})
            result = {
                key: item if key in known else apply_defaults(extra, item) for key, item in result.items()
            }
        return result
    if isinstance(value, list) and "items" in node_schema:
        return [apply_defaults(node_schema["items"], item) for item in value]
    return value


# --- structural schema ---


def _go_pattern(
    validator: Any, pattern: str, instance: Any, _schema: Any
) -> Iterator[jsonschema.ValidationError]:
    if isinstance(instance, str) and re.search(pattern.replace("$", r"\Z"), instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft4Validator, {"pattern": _go_pattern}
)


def _strict(node: Any) -> Any:
    # kubectl's default strict field validation: an unknown field is an error, not silently pruned.
    if isinstance(node, dict):
        result = {key: _strict(value) for key, value in node.items()}
        closed = "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields")
        if closed and "additionalProperties" not in node:
            result["additionalProperties"] = False
        return result
    if isinstance(node, list):
        return [_strict(item) for item in node]
    return node


@cache
def _validator() -> Any:
    strict = _strict(schema())
    strict["properties"]["metadata"] = {"type": "object"}
    return _Validator(strict)


_MAPS = {"requests", "limits", "nodeSelector", "podMonitorLabels"}


def field_path(parts: list[str | int]) -> str:
    path = ""
    parent = ""
    for part in parts:
        if isinstance(part, int) or parent in _MAPS:
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
        parent = str(part)
    return path


def _beyond_int64(value: Any, parts: list[str | int]) -> Iterator[tuple[str, str]]:
    # The API server decodes JSON integers as int64; a larger one is not an integer to it.
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _beyond_int64(item, [*parts, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _beyond_int64(item, [*parts, index])
    elif isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        yield field_path(parts), "must be a 64-bit integer"


def _schema_problems(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = list(_beyond_int64(document, []))
    for error in _validator().iter_errors(document):
        parts: list[str | int] = list(error.absolute_path)
        if error.validator == "required":
            missing = [name for name in error.validator_value if name not in error.instance]
            problems += [(field_path([*parts, name]), "required") for name in missing]
        elif error.validator == "additionalProperties":
            known = error.schema.get("properties", {})
            problems += [
                (field_path([*parts, name]), "unknown field") for name in error.instance if name not in known
            ]
        else:
            problems.append((field_path(parts), error.message))
    return problems


# --- CEL ---


def _to_cel(node_schema: Mapping[str, Any], value: Any) -> Any:
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, dict):
        properties = node_schema.get("properties", {})
        extra = node_schema.get("additionalProperties", {})
        return celtypes.MapType(
            {
                celtypes.StringType(k): _to_cel(
                    properties.get(k, extra if isinstance(extra, dict) else {}), v
                )
                for k, v in value.items()
            }
        )
    if isinstance(value, list):
        return celtypes.ListType([_to_cel(node_schema.get("items", {}), item) for item in value])
    if isinstance(value, str):
        return celtypes.StringType(value)
    if node_schema.get("type") == "number":
        return celtypes.DoubleType(float(value))
    if isinstance(value, int):
        return celtypes.IntType(value)
    return celtypes.DoubleType(value)


def _is_sorted(items: Any) -> celtypes.BoolType:
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))


class Quantity(celtypes.StringType):
    """A Kubernetes quantity as a CEL value: only `compareTo` is used by the CRD."""

    @property
    def amount(self) -> Decimal:
        return parse_quantity(str(self))


def _quantity(text: celtypes.StringType) -> Quantity:
    parse_quantity(str(text))  # a bad quantity is an evaluation error, as in Kubernetes
    return Quantity(str(text))


def _compare_to(left: Quantity, right: Quantity) -> celtypes.IntType:
    return celtypes.IntType((left.amount > right.amount) - (left.amount < right.amount))


# Go's time.Duration is an int64 of nanoseconds: CEL's duration() fails beyond about 292 years.
MAX_DURATION_S = (2**63 - 1) / 1e9


def _duration(text: celtypes.StringType) -> celtypes.DurationType:
    value = celtypes.DurationType(text)
    if abs(value.total_seconds()) > MAX_DURATION_S:
        raise ValueError(f"duration {text} is out of Go's range")
    return value


KUBERNETES_FUNCTIONS: dict[str, Any] = {
    "duration": _duration,
    "isSorted": _is_sorted,
    "quantity": _quantity,
    "compareTo": _compare_to,
}


@cache
def _program(rule: str) -> Any:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule), functions=KUBERNETES_FUNCTIONS)


def evaluate(rule: str, self_value: Any, node_schema: Mapping[str, Any] | None = None) -> bool:
    """One rule on one value (bound to `self`); an evaluation error counts as a failure, as in Kubernetes."""
    try:
        result = _program(rule).evaluate({"self": _to_cel(node_schema or {}, self_value)})
    except CELEvalError:
        return False
    if isinstance(result, CELEvalError):
        return False
    return bool(result)


def all_rules() -> list[tuple[str, dict[str, Any]]]:
    """Every (schema path, rule) of the CRD, for coverage checks."""
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(node: Mapping[str, Any], path: str) -> None:
        found.extend((path, rule) for rule in node.get("x-kubernetes-validations", []))
        for name, child in node.get("properties", {}).items():
            walk(child, f"{path}.{name}" if path else name)
        if "items" in node:
            walk(node["items"], f"{path}[*]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}[*]")

    walk(schema(), "")
    return found


def _cel_problems(
    node_schema: Mapping[str, Any], value: Any, parts: list[str | int]
) -> Iterator[tuple[str, str]]:
    for rule in node_schema.get("x-kubernetes-validations", []):
        if not evaluate(rule["rule"], value, node_schema):
            # Root rules are about metadata.name (the only part of metadata a CRD's CEL may read).
            where = field_path(parts) or "metadata.name"
            yield (where + rule.get("fieldPath", ""), rule["message"])
    if isinstance(value, dict):
        for name, child in node_schema.get("properties", {}).items():
            if name in value:
                yield from _cel_problems(child, value[name], [*parts, name])
    if isinstance(value, list) and "items" in node_schema:
        for index, item in enumerate(value):
            yield from _cel_problems(node_schema["items"], item, [*parts, index])


def prune_nulls(value: Any) -> Any:
    """The API server drops null fields of a non-nullable schema (this CRD has no nullable field) before
    defaulting; a null list item stays and is refused."""
    if isinstance(value, dict):
        return {key: prune_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [prune_nulls(item) for item in value]
    return value


def admit(document: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """(the stored object, [(field path, message)]): no problems means the API server accepts it."""
    defaulted: dict[str, Any] = apply_defaults(schema(), prune_nulls(dict(document)))
    problems = _schema_problems(defaulted)
    if problems:
        return defaulted, problems
    return defaulted, list(_cel_problems(schema(), defaulted, []))


# --- built-in kinds ---

KUBERNETES_VERSION = "1.37.0"
BUILTIN_KINDS = {"Deployment", "Service", "Job", "HorizontalPodAutoscaler", "CustomResourceDefinition"}


def validate_builtin(manifest: Mapping[str, Any]) -> None:
    """Check a built-in object against the official Kubernetes JSON schema, strictly (unknown fields fail)."""
    try:
        import kubernetes_validate  # noqa: PLC0415  # only the tests that validate need it
    except ImportError as error:
        from realparts import missing  # noqa: PLC0415

        missing("kubernetes-validate", str(error))
    kubernetes_validate.validate(dict(manifest), KUBERNETES_VERSION, strict=True)
