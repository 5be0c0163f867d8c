"""Spec cases generated from the CRD's own schema: every bound, length, item count and enum of every field.

For each field of `spec` (walking `crds/modeldeployment.yaml`, items and map values included) the cases
put one value into an otherwise valid object (`FULL`, where every optional field is set and every rule
holds): integers at min-1, min, max, max+1; numbers also just inside and outside an exclusive bound;
strings of exactly maxLength and maxLength+1 characters (still matching the pattern); lists of
minItems-1, maxItems and maxItems+1 items; maps of maxProperties and maxProperties+1 entries; every enum
value and two that are not; and values of the wrong JSON type. Nothing here is a hand-written bound: a bound
changed in the CRD changes the cases. `judge_*` give each side's verdict as the set of field paths refused.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import cel_rules

from modeldeploy.spec import LABEL_KEY, SpecError, parse_spec

Path = tuple[str | int, ...]

# Every optional field set, every rule satisfied: a value placed in it is judged on its own.
FULL: dict[str, Any] = {
    # Set, not left to the operator-wide default: the CRD can then judge what the default decides (the
    # serving GPU limit). Left unset, that rule is the operator's alone (tests/test_crd.py OPERATOR_ONLY).
    "accelerator": "gpu",
    "model": {
        "name": "resnet",
        "uri": "s3://models/resnet.onnx",
        "format": "onnx",
        "credentialsSecret": "model-creds",
    },
    "optimization": {
        "quantization": "int8-static",
        "pruning": {"sparsity": 0.5, "method": "magnitude"},
        "compile": {"target": "none", "precision": "fp16"},
        "maxAccuracyDrop": 0.01,
        "calibration": {"uri": "pvc://calibration/images", "samples": 256},
        "image": "ghcr.io/modeldeploy/optimizer:0.1.0",
        "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "4", "nvidia.com/gpu": "1"}},
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule",
                         "tolerationSeconds": 60}],
    },
    "serving": {
        "image": "nvcr.io/nvidia/tritonserver:24.08-py3",
        "replicas": 2,
        "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "4", "nvidia.com/gpu": "1"}},
        "maxBatchSize": 4096,
        "dynamicBatching": {"preferredBatchSizes": [4, 8], "maxQueueDelayMicroseconds": 100},
        "instanceGroup": {"kind": "gpu", "count": 1},
        "warmup": False,
        "extraArgs": ["--log-verbose=1"],
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule",
                         "tolerationSeconds": 60}],
    },
    "storage": {"uri": "s3://artifacts/prefix", "credentialsSecret": "store-creds",
                "endpoint": "http://minio:9000"},
    "autoscaling": {"engine": "keda", "minReplicas": 1, "maxReplicas": 1000, "metric": "queueTime",
                    "target": 20},
    "rollout": {
        "strategy": "canary",
        "steps": [10, 50, 100],
        "interval": "1m",
        "progressDeadline": "30m",
        "trafficRouting": {
            "type": "gatewayAPI",
            "gatewayAPI": {"parentRef": {"name": "gw", "namespace": "edge", "sectionName": "https"},
                           "hostnames": ["models.example.com"]},
        },
        "analysis": {"maxErrorRate": 0.01, "maxP99LatencyMs": 250, "maxLatencyRatio": 1.2,
                     "minRequests": 50, "failureThreshold": 2, "maxConsecutiveErrors": 3},
    },
    "monitoring": {"prometheusUrl": "http://prometheus:9090",
                   "prometheusAuth": {"secretName": "prometheus-auth", "type": "bearerToken"},
                   "podMonitor": True, "podMonitorLabels": {"release": "kube-prometheus-stack"}},
}  # fmt: skip

# Where one field's valid range depends on another, the other one is moved out of the way (a value at
# the bound is then judged by that bound alone). Keys are spec paths with `[]` for items, `{}` for values.
CONTEXT: dict[str, dict[str, Any]] = {
    # dynamicBatching needs maxBatchSize > 0: without it, 0 is a valid maxBatchSize.
    "serving.maxBatchSize": {"serving": {"dynamicBatching": None}},
    # A limit is judged without a request that would have to fit under it.
    "optimization.resources.limits": {"optimization": {"resources": {"requests": None}}},
    "serving.resources.limits": {"serving": {"resources": {"requests": None}}},
}

# Value-dependent: a case whose id (field path with `[]`, then the label) starts with the key.
CASE_CONTEXT: dict[str, dict[str, Any]] = {
    "optimization.tolerations[].operator enum Exists": {"optimization": {"tolerations": [{"key": "a"}]}},
    "serving.tolerations[].operator enum Exists": {"serving": {"tolerations": [{"key": "a"}]}},
    "rollout.trafficRouting.type enum replicas": {"rollout": {"trafficRouting": {"gatewayAPI": None}}},
}

# Map keys used when a map needs more entries (label keys and resource names).
MAP_KEY_PREFIX = "example.com/k"


@dataclass(frozen=True)
class Case:
    id: str
    field: str  # the API server's path of the field under test, e.g. spec.serving.replicas
    spec: dict[str, Any]
    in_range: bool  # the value is within the field's own bounds (a valid value for it alone)
    source: int = 0  # id() of the schema node whose bound the case tries


def schema() -> dict[str, Any]:
    spec_schema: dict[str, Any] = cel_rules.schema()["properties"]["spec"]
    return spec_schema


def api_path(path: Path) -> str:
    return cel_rules.field_path(["spec", *path])


def _context_key(path: Path) -> str:
    parts = []
    for part in path:
        parts.append("[]" if isinstance(part, int) else str(part))
    return ".".join(parts).replace(".[]", "[]")


def _set(spec: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    result = copy.deepcopy(spec)
    node: Any = result
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return result


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _get(spec: Any, path: Path) -> Any:
    for part in path:
        spec = spec[part]
    return spec


def _matches(pattern: str | None, text: str) -> bool:
    return pattern is None or re.search(pattern.replace("$", r"\Z"), text) is not None


def stretched(valid: str, length: int, pattern: str | None) -> str:
    """A string of exactly `length` characters that still matches `pattern`, grown from `valid` by
    repeating one of its characters (the first position, from the end, whose repetition keeps it valid)."""
    if len(valid) >= length and _matches(pattern, valid[:length]):
        return valid[:length]
    extra = length - len(valid)
    if _matches(pattern, "0" * extra + valid):  # leading zeros keep durations and names short in meaning
        return "0" * extra + valid
    for index in range(len(valid) - 1, -1, -1):
        candidate = valid[:index] + valid[index] * (extra + 1) + valid[index + 1 :]
        if _matches(pattern, candidate):
            return candidate
    raise ValueError(f"cannot stretch {valid!r} to {length} characters matching {pattern!r}")


def _numbers(node: Mapping[str, Any]) -> Iterator[tuple[str, Any, bool]]:
    """(label, value, within the bounds) for a numeric node."""
    integer = node["type"] == "integer"
    step: float = 1 if integer else 1e-6
    if "minimum" in node:
        low = node["minimum"]
        if node.get("exclusiveMinimum"):
            yield "min (exclusive)", low, False
            yield "just above min", low + step, True
        else:
            yield "min", low, True
            yield "just below min", low - step, False
        yield "min-1", low - 1, False
    if "maximum" in node:
        high = node["maximum"]
        if node.get("exclusiveMaximum"):
            yield "max (exclusive)", high, False
            yield "just below max", high - step, True
        else:
            yield "max", high, True
            yield "just above max", high + step, False
        yield "max+1", high + 1, False


def _wrong_types(node: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    kind = node.get("type")
    if node.get("x-kubernetes-int-or-string"):
        yield from (("bool", True), ("float", 1.5), ("list", [1]))
    elif kind == "integer":
        yield from (("float", 1.5), ("string", "1"), ("bool", True))
    elif kind == "number":
        yield from (("string", "0.5"), ("bool", True))
    elif kind == "string":
        yield from (("integer", 1), ("bool", False), ("list", ["a"]))
    elif kind == "boolean":
        yield from (("string", "true"), ("integer", 1))
    elif kind == "object":
        yield from (("string", "x"), ("list", []))
    elif kind == "array":
        yield from (("string", "x"), ("object", {}))


def _leaf_values(node: Mapping[str, Any], valid: Any) -> Iterator[tuple[str, Any, bool]]:
    kind = node.get("type")
    if kind in ("integer", "number"):
        yield from _numbers(node)
    elif node.get("x-kubernetes-int-or-string"):
        yield from _numbers({**node, "type": "integer"})
    if "enum" in node:
        for value in node["enum"]:
            yield f"enum {value}", value, True
        yield "not in enum", "bogus", False
        yield "enum in upper case", str(node["enum"][0]).upper(), False
    stringy = kind == "string" or node.get("x-kubernetes-int-or-string")
    if stringy and "maxLength" in node and isinstance(valid, str):
        length = node["maxLength"]
        pattern = node.get("pattern")
        yield "maxLength", stretched(valid, length, pattern), True
        yield "maxLength+1", stretched(valid, length + 1, pattern), False
    for label, value in _wrong_types(node):
        yield f"wrong type {label}", value, False


def _item(node: Mapping[str, Any], valid_items: list[Any], index: int) -> Any:
    items = node["items"]
    if items.get("type") == "integer":
        return items.get("minimum", 0) + index  # strictly increasing and in range
    if items.get("type") == "string":
        base = valid_items[0]
        return stretched(base, len(base) + index, items.get("pattern"))
    return copy.deepcopy(valid_items[0])


def _list_values(node: Mapping[str, Any], valid: list[Any]) -> Iterator[tuple[str, Any, bool]]:
    if "minItems" in node:
        count = node["minItems"]
        yield "minItems", [_item(node, valid, i) for i in range(count)], True
        if count > 0:
            yield "minItems-1", [_item(node, valid, i) for i in range(count - 1)], False
    if "maxItems" in node:
        count = node["maxItems"]
        yield "maxItems", [_item(node, valid, i) for i in range(count)], True
        yield "maxItems+1", [_item(node, valid, i) for i in range(count + 1)], False


def _map_values(node: Mapping[str, Any], valid: dict[str, Any]) -> Iterator[tuple[str, Any, bool]]:
    if "maxProperties" in node:
        count = node["maxProperties"]
        value = next(iter(valid.values()))

        def entries(n: int) -> dict[str, Any]:
            result = dict(valid)
            index = 0
            while len(result) < n:
                result[f"{MAP_KEY_PREFIX}{index}"] = value
                index += 1
            return dict(list(result.items())[:n])

        yield "maxProperties", entries(count), True
        yield "maxProperties+1", entries(count + 1), False


Found = tuple[Path, str, Any, bool, int]


def _walk(node: Mapping[str, Any], path: Path, valid: Any) -> Iterator[Found]:
    kind, source = node.get("type"), id(node)
    if kind == "array" and isinstance(valid, list):
        for label, value, ok in _list_values(node, valid):
            yield path, label, value, ok, source
        for label, value in _wrong_types(node):
            yield path, f"wrong type {label}", value, False, source
        if valid:
            yield from _walk(node["items"], (*path, 0), valid[0])
        return
    if kind == "object" and "properties" in node and isinstance(valid, dict):
        if path:
            for label, value in _wrong_types(node):
                yield path, f"wrong type {label}", value, False, source
        for name, child in node["properties"].items():
            if name in valid:
                yield from _walk(child, (*path, name), valid[name])
        return
    if kind == "object" and isinstance(node.get("additionalProperties"), dict) and isinstance(valid, dict):
        for label, value, ok in _map_values(node, valid):
            yield path, label, value, ok, source
        key = next(iter(valid))
        yield from _walk(node["additionalProperties"], (*path, key), valid[key])
        return
    for label, value, ok in _leaf_values(node, valid):
        yield path, label, value, ok, source


def _unvisited(node: Mapping[str, Any], path: Path, valid: Any) -> Iterator[str]:
    """Schema fields FULL leaves out (the generator could not reach them)."""
    if node.get("type") == "object" and "properties" in node:
        for name, child in node["properties"].items():
            if not isinstance(valid, dict) or name not in valid:
                yield api_path((*path, name))
            else:
                yield from _unvisited(child, (*path, name), valid[name])
    elif node.get("type") == "array" and isinstance(valid, list) and valid:
        yield from _unvisited(node["items"], (*path, 0), valid[0])


def unreached_fields() -> list[str]:
    return list(_unvisited(schema(), (), FULL))


def boundary_cases(spec_schema: Mapping[str, Any] | None = None) -> list[Case]:
    """The cases of the CRD's spec schema (or of `spec_schema`, e.g. a deliberately changed copy)."""
    cases = []
    for found_path, label, found_value, in_range, source in _walk(spec_schema or schema(), (), FULL):
        path, value = found_path, found_value
        base = FULL
        for key, changes in CONTEXT.items():
            if _context_key(path).startswith(key):
                base = _merge(base, changes)
        for key, changes in CASE_CONTEXT.items():
            if f"{_context_key(path)} {label}".startswith(key):
                base = _merge(base, changes)
        if isinstance(path[-1], int) and isinstance(value, int) and not isinstance(value, bool):
            # An integer item alone in its list: ordering rules (steps) cannot refuse it.
            path, value = path[:-1], [value]
        field = api_path(path)
        cases.append(Case(f"{field} {label}", field, _set(base, path, value), in_range, source))
    return cases


def verdict_problem(case: Case) -> str | None:
    """What is wrong with how the two sides judge `case`, or None when they agree and a value within the
    field's bounds is accepted."""
    crd, operator = judge_crd(case.spec), judge_spec(case.spec)
    problem = disagreement(case.field, crd, operator)
    if problem is None and (crd == set()) != case.in_range:
        problem = f"in range: {case.in_range}, but CRD refuses {sorted(crd)}"
    return problem


# --- objects generated by hypothesis-jsonschema --------------------------------------------------------


def _for_generation(node: Any) -> Any:
    """The schema as hypothesis-jsonschema reads it: closed objects (kubectl's strict field validation),
    Kubernetes extensions and descriptions left out, map keys drawn as label keys (keys are checked by
    the operator only: tests/test_crd.py OPERATOR_ONLY)."""
    if isinstance(node, list):
        return [_for_generation(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {
        key: _for_generation(value)
        for key, value in node.items()
        if not key.startswith("x-kubernetes-") and key != "description"
    }
    if "properties" in node and "additionalProperties" not in node:
        result["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        result["propertyNames"] = {"pattern": LABEL_KEY, "maxLength": 63}
    return result


def section_schema(name: str) -> dict[str, Any]:
    generated: dict[str, Any] = _for_generation(schema()["properties"][name])
    return generated


def sections() -> list[str]:
    return list(schema()["properties"])


def document(spec: Mapping[str, Any], name: str = "demo") -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": dict(spec),
    }


def judge_crd(spec: Mapping[str, Any]) -> set[str]:
    """The fields the CRD (schema + CEL, as the API server runs them) refuses; empty: admitted."""
    return {path for path, _ in cel_rules.admit(document(spec))[1]}


def judge_spec(spec: Mapping[str, Any]) -> set[str]:
    """The fields `parse_spec` refuses; empty: accepted."""
    try:
        parse_spec(spec)
    except SpecError as error:
        return {problem.path for problem in error.problems}
    return set()


def disagreement(field: str | None, crd: set[str], operator: set[str]) -> str | None:
    """Why two verdicts disagree, or None. Both must accept, or both refuse naming the same field: the
    field under test when there is one, else at least one field in common."""
    if not crd and not operator:
        return None
    if not crd or not operator:
        return f"CRD refuses {sorted(crd)}, spec refuses {sorted(operator)}"
    if crd == operator:
        return None
    if field is not None and not (_names(field, crd) and _names(field, operator)):
        return f"not both naming {field}: CRD {sorted(crd)}, spec {sorted(operator)}"
    if field is None and not crd & operator:
        return f"no field in common: CRD {sorted(crd)}, spec {sorted(operator)}"
    return None


def _names(field: str, paths: set[str]) -> bool:
    # A refusal names the field itself, or a part of it (an item, a map entry), or, for a cross-field rule
    # on its object, the object that holds it.
    return any(
        p == field or p.startswith((f"{field}.", f"{field}[")) or field.startswith((f"{p}.", f"{p}["))
        for p in paths
    )
