"""Adversarial strings in every user-controlled field: refused naming the field, by the CRD (schema + CEL,
tests/cel_rules.py) and by the spec model alike, or rendered as exactly that field's value and nothing else.

For each (field, payload): render once with a unique harmless token in the field and once with the payload.
If the spec model accepts the payload, the payload rendering must equal the token rendering with the token
replaced by the payload in string values (JSON inside MODELDEPLOY_SPEC compared decoded): same objects, same
keys, same containers, and the payload byte-for-byte wherever the token was. Each character class comes
alone too (a newline, U+2028, a quote, a backslash, `---`, each control character), so a field that takes
quotes but not newlines still sees its quotes placed verbatim.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import cel_rules
import pytest

from modeldeploy.rendering import Owner, RenderPlan, render_all
from modeldeploy.spec import SpecError, parse_spec

OWNER = Owner(name="demo", namespace="ml", uid="uid-1")
PLAN = RenderPlan(
    stable_revision="aaaaaaaaaa",
    canary_revision="bbbbbbbbbb",
    canary_weight=25,
    optimize_revision="bbbbbbbbbb",
)
TOKEN = "sentinel0"

PAYLOADS = {
    "empty": "",
    "newline document": "x\n---\napiVersion: v1\nkind: Secret",
    "newline key": "x\nevil: true",
    "jinja expression": "{{ 7 * 7 }}",
    "jinja statement": "{% for x in [1] %}x{% endfor %}",
    "yaml anchor and alias": "&a [*a, *a]",
    "python tag": "!!python/object/apply:os.system ['id']",
    "quotes and backslashes": 'it\'s "quoted" \\n \\\\',
    "flow collection": "{a: 1, b: [2, 3]}",
    "comment": "x # comment",
    "unicode": "modèle-ünïcode-漢字-😀",
    "unicode line breaks": "a\u2028b\u0085c\u2029d",
    "control characters": "\x00\x1b[31m\x7f",
    "long": "a" * 10_000,
    "yaml keywords": "null",
    "number": "1e3",
    # One character class at a time.
    "newline": "a\nb",
    "carriage return": "a\rb",
    "line separator": "a\u2028b",
    "next line": "a\u0085b",
    "document marker": "---",
    "document end": "a...b---c",
    "double quote": 'a"b',
    "single quote": "a'b",
    "backslash": "a\\b",
    "escaped newline": "a\\nb",
    "tab": "a\tb",
    "nul": "a\x00b",
    "escape": "a\x1b[0mb",
    "delete": "a\x7fb",
    "space": "a b",
    "colon space": "a: b",
}
# Never valid in any field: line breaks and control characters.
NEVER_ACCEPTED = (
    "newline",
    "carriage return",
    "line separator",
    "next line",
    "tab",
    "nul",
    "escape",
    "delete",
)
# Accepted by the free-text fields (URIs, URLs, extraArgs values): quotes, backslashes, `---`.
FREE_TEXT = (
    "document marker",
    "document end",
    "double quote",
    "single quote",
    "backslash",
    "escaped newline",
)


def _spec() -> dict[str, Any]:
    # Every optional feature on, so every field reaches a manifest.
    return {
        "model": {"name": "resnet", "uri": "s3://models/resnet.onnx", "credentialsSecret": "model-creds"},
        "optimization": {
            "quantization": "int8-static",
            "calibration": {"uri": "pvc://calibration/images"},
            "image": "ghcr.io/modeldeploy/optimizer:0.1.0",
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}],
        },
        "serving": {
            "image": "nvcr.io/nvidia/tritonserver:24.08-py3",
            "extraArgs": ["--log-verbose=1"],
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}],
            "resources": {"limits": {"memory": "8Gi", "nvidia.com/gpu": "1"}},
        },
        "storage": {
            "uri": "s3://artifacts/prefix",
            "credentialsSecret": "store-creds",
            "endpoint": "http://minio:9000",
        },
        "autoscaling": {"engine": "keda", "target": 20},
        "rollout": {
            "trafficRouting": {
                "type": "gatewayAPI",
                "gatewayAPI": {
                    "parentRef": {"name": "gw", "namespace": "edge", "sectionName": "https"},
                    "hostnames": ["models.example.com"],
                },
            }
        },
        "monitoring": {"prometheusUrl": "http://prometheus:9090"},
    }


Setter = Callable[[dict[str, Any], str], None]


def _at(*path: str | int) -> Setter:
    def put(spec: dict[str, Any], value: str) -> None:
        node: Any = spec
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return put


def _key_of(*path: str) -> Setter:
    def put(spec: dict[str, Any], key: str) -> None:
        node: Any = spec
        for part in path:
            node = node[part]
        node[key] = node.pop(next(iter(node)))

    return put


def _prefixed(prefix: str) -> Callable[[str], str]:
    return lambda value: prefix + value


CALIBRATION_URI = _at("optimization", "calibration", "uri")
GW = "spec.rollout.trafficRouting.gatewayAPI"
GW_KEYS = ("rollout", "trafficRouting", "gatewayAPI")

# (field path as errors name it, how to place a value, wrapper giving the value a valid shape, token)
FIELDS: list[tuple[str, Setter, Callable[[str], str], str]] = [
    ("spec.model.name", _at("model", "name"), str, TOKEN),
    ("spec.model.uri", _at("model", "uri"), _prefixed("s3://models/"), TOKEN),
    ("spec.model.uri", _at("model", "uri"), _prefixed("pvc://uploads/"), TOKEN),
    ("spec.model.credentialsSecret", _at("model", "credentialsSecret"), str, TOKEN),
    ("spec.optimization.image", _at("optimization", "image"), str, TOKEN),
    ("spec.optimization.calibration.uri", CALIBRATION_URI, _prefixed("s3://data/"), TOKEN),
    ("spec.optimization.nodeSelector", _at("optimization", "nodeSelector", "pool"), str, TOKEN),
    ("spec.optimization.nodeSelector", _key_of("optimization", "nodeSelector"), str, TOKEN),
    ("spec.optimization.tolerations[0].key", _at("optimization", "tolerations", 0, "key"), str, TOKEN),
    ("spec.optimization.tolerations[0].value", _at("optimization", "tolerations", 0, "value"), str, TOKEN),
    ("spec.serving.image", _at("serving", "image"), str, TOKEN),
    ("spec.serving.extraArgs", _at("serving", "extraArgs", 0), _prefixed("--"), "log-file"),
    ("spec.serving.extraArgs", _at("serving", "extraArgs", 0), _prefixed("--log-file="), TOKEN),
    ("spec.serving.nodeSelector", _at("serving", "nodeSelector", "pool"), str, TOKEN),
    ("spec.serving.nodeSelector", _key_of("serving", "nodeSelector"), str, TOKEN),
    ("spec.serving.resources.limits", _at("serving", "resources", "limits", "memory"), str, "7Gi"),
    ("spec.serving.resources.limits", _key_of("serving", "resources", "limits"), str, TOKEN),
    ("spec.storage.uri", _at("storage", "uri"), _prefixed("s3://artifacts/"), TOKEN),
    ("spec.storage.credentialsSecret", _at("storage", "credentialsSecret"), str, TOKEN),
    ("spec.storage.endpoint", _at("storage", "endpoint"), _prefixed("http://"), TOKEN),
    (f"{GW}.parentRef.name", _at(*GW_KEYS, "parentRef", "name"), str, TOKEN),
    (f"{GW}.parentRef.namespace", _at(*GW_KEYS, "parentRef", "namespace"), str, TOKEN),
    (f"{GW}.parentRef.sectionName", _at(*GW_KEYS, "parentRef", "sectionName"), str, TOKEN),
    (f"{GW}.hostnames[0]", _at(*GW_KEYS, "hostnames", 0), str, TOKEN),
    ("spec.monitoring.prometheusUrl", _at("monitoring", "prometheusUrl"), _prefixed("http://prom/"), TOKEN),
]  # fmt: skip


def _is_key(setter: Setter) -> bool:
    return setter.__qualname__.startswith("_key_of")


def _crd_problems(raw: dict[str, Any]) -> list[str]:
    document = {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "demo", "namespace": "ml"},
        "spec": raw,
    }
    return [path for path, _ in cel_rules.admit(document)[1]]


def _names(path: str, paths: list[str]) -> bool:
    return bool(paths) and all(p == path or p.startswith((f"{path}.", f"{path}[")) for p in paths)


def _render(field: Setter, value: str) -> list[dict[str, Any]]:
    raw = _spec()
    field(raw, value)
    return render_all(OWNER, parse_spec(raw), PLAN)


def _substituted(value: Any, token: str, payload: str) -> Any:
    """`value` with `token` replaced by `payload` in every string (and inside MODELDEPLOY_SPEC's JSON)."""
    if isinstance(value, dict):
        if value.get("name") == "MODELDEPLOY_SPEC" and "value" in value:
            return {**value, "value": _substituted(json.loads(value["value"]), token, payload)}
        return {_substituted(k, token, payload): _substituted(v, token, payload) for k, v in value.items()}
    if isinstance(value, list):
        return [_substituted(item, token, payload) for item in value]
    if isinstance(value, str):
        return value.replace(token, payload)
    return value


def _decoded(value: Any) -> Any:
    return _substituted(value, "", "")  # only decodes MODELDEPLOY_SPEC, so both sides compare alike


def _cases() -> list[Any]:
    return [
        pytest.param(path, setter, wrap, token, payload, id=f"{path}|{index}|{name}")
        for index, (path, setter, wrap, token) in enumerate(FIELDS)
        for name, payload in PAYLOADS.items()
    ]


@pytest.mark.parametrize(("path", "setter", "wrap", "token", "payload"), _cases())
def test_payload_is_refused_naming_its_field_or_lands_exactly_in_it(
    path: str, setter: Setter, wrap: Callable[[str], str], token: str, payload: str
) -> None:
    raw = _spec()
    setter(raw, wrap(payload))
    crd = _crd_problems(raw)
    try:
        spec = parse_spec(raw)
    except SpecError as error:
        paths = [problem.path for problem in error.problems]
        assert _names(path, paths), paths
        assert all(problem.message for problem in error.problems)
        # The API server refuses it first, naming the same field (map keys: the operator only, see
        # tests/test_crd.py OPERATOR_ONLY).
        assert _is_key(setter) or _names(path, crd), crd
        return
    assert crd == [], f"the spec model accepts what the CRD refuses: {crd}"
    rendered = render_all(OWNER, spec, PLAN)
    baseline = _render(setter, wrap(token))
    expected = _substituted(baseline, token, payload) if payload else baseline
    if payload:
        assert _decoded(rendered) == expected
    else:
        # An empty payload cannot be substituted; the object shapes must still match exactly.
        assert _shape(rendered) == _shape(baseline)


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k != "value" or not isinstance(v, str)}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return type(value).__name__


def test_some_payloads_are_accepted_so_the_exact_placement_check_runs() -> None:
    """Guard against a suite that only ever sees refusals: these land verbatim in manifests."""
    accepted = 0
    for _, setter, wrap, _ in FIELDS:
        for payload in PAYLOADS.values():
            raw = _spec()
            setter(raw, wrap(payload))
            try:
                parse_spec(raw)
            except SpecError:
                continue
            accepted += 1
    assert accepted >= 20


def _accepted(setter: Setter, wrap: Callable[[str], str], payload: str) -> bool:
    raw = _spec()
    setter(raw, wrap(payload))
    try:
        parse_spec(raw)
    except SpecError:
        return False
    return True


@pytest.mark.parametrize("payload", NEVER_ACCEPTED)
def test_line_breaks_and_control_characters_reach_no_field(payload: str) -> None:
    accepted = [path for path, setter, wrap, _ in FIELDS if _accepted(setter, wrap, PAYLOADS[payload])]
    assert accepted == []


FREE_TEXT_FIELDS = {
    "spec.model.uri",
    "spec.optimization.calibration.uri",
    "spec.serving.extraArgs",
    "spec.monitoring.prometheusUrl",
}


@pytest.mark.parametrize("payload", FREE_TEXT)
def test_quotes_backslashes_and_document_markers_reach_the_free_text_fields(payload: str) -> None:
    """So the exact-placement check above runs with them: each lands verbatim in each free-text field."""
    accepted = {path for path, setter, wrap, _ in FIELDS if _accepted(setter, wrap, PAYLOADS[payload])}
    assert accepted >= FREE_TEXT_FIELDS


def test_accepted_payload_appears_verbatim_in_the_job_arguments() -> None:
    payload = PAYLOADS["jinja expression"].replace(" ", "")
    uri = f"s3://models/{payload}&a*b!!python/x'\"\\"
    objects = _render(_at("model", "uri"), uri)
    job = objects[0]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][1] == uri
    assert len(objects) == len(_render(_at("model", "uri"), "s3://models/plain.onnx"))
    assert not any(re.search(r"\b49\b", json.dumps(o)) for o in objects)  # jinja never evaluated it
