"""CRD ⇄ spec agreement on cases generated from the CRD's own schema (tests/crd_cases.py), judged by the
CRD's rules as the API server runs them (tests/cel_rules.py: structural schema + CEL) and by `parse_spec`.

A bound loosened or tightened on one side only, an enum value added to one side, a length limit missing
from the spec model: each makes a generated case go one way on one side and the other way on the other.
The last test proves it for the CRD side: every bound of the CRD, loosened by one, is caught.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import cel_rules
import crd_cases
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

CASES = crd_cases.boundary_cases()


def test_the_generator_reaches_every_field_of_the_spec() -> None:
    assert crd_cases.unreached_fields() == []
    assert len(CASES) > 300


def test_the_full_object_is_valid_on_both_sides() -> None:
    assert crd_cases.judge_crd(crd_cases.FULL) == set()
    assert crd_cases.judge_spec(crd_cases.FULL) == set()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_crd_and_spec_agree_on_every_bound(case: crd_cases.Case) -> None:
    assert crd_cases.verdict_problem(case) is None


def test_every_kind_of_bound_is_tried() -> None:
    labels = {case.id.split(" ", 1)[1] for case in CASES}
    assert {"min", "min-1", "max", "max+1", "maxLength", "maxLength+1", "maxItems", "maxItems+1"} <= labels
    assert {
        "min (exclusive)",
        "just above min",
        "max (exclusive)",
        "maxProperties+1",
        "not in enum",
    } <= labels


SECTION_STRATEGIES = {name: from_schema(crd_cases.section_schema(name)) for name in crd_cases.sections()}


@st.composite
def generated_spec(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """FULL with one section replaced by an object hypothesis-jsonschema drew from that section's schema."""
    name = draw(st.sampled_from(sorted(SECTION_STRATEGIES)))
    return name, {**crd_cases.FULL, name: draw(SECTION_STRATEGIES[name])}


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    # No shrinking: on these nested objects it can take minutes; the failing object is reported as drawn.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(generated_spec())
@pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")
def test_crd_and_spec_agree_on_objects_drawn_from_the_schema(drawn: tuple[str, dict[str, Any]]) -> None:
    _, spec = drawn
    crd, operator = crd_cases.judge_crd(spec), crd_cases.judge_spec(spec)
    assert crd_cases.disagreement(None, crd, operator) is None


# --- the generator catches a loosened CRD ------------------------------------------------------------

LOOSENED: dict[str, Callable[[Any], Any]] = {
    "minimum": lambda value: value - 1,
    "maximum": lambda value: value + 1,
    "maxLength": lambda value: value + 1,
    "maxItems": lambda value: value + 1,
    "minItems": lambda value: value - 1,
    "maxProperties": lambda value: value + 1,
    "exclusiveMinimum": lambda value: False,
    "exclusiveMaximum": lambda value: False,
    "enum": lambda value: [*value, "bogus"],
}


def _bounds(node: dict[str, Any], where: str) -> Iterator[tuple[dict[str, Any], str, str]]:
    for key in LOOSENED:
        if key in node and (node[key] is not False) and not (key == "minItems" and node[key] == 0):
            yield node, key, where
    for name, child in node.get("properties", {}).items():
        yield from _bounds(child, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from _bounds(node[key], f"{where}[]")


def _all_bounds() -> list[tuple[str, str]]:
    return [(where, key) for _, key, where in _bounds(copy.deepcopy(crd_cases.schema()), "spec")]


@pytest.fixture
def loosened_crd(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A copy of the CRD the test may change; cel_rules judges with it until the test ends."""
    changed = copy.deepcopy(cel_rules.crd())
    monkeypatch.setattr(cel_rules, "crd", lambda: changed)
    cel_rules._validator.cache_clear()
    try:
        yield changed
    finally:
        monkeypatch.undo()
        cel_rules._validator.cache_clear()


@pytest.mark.parametrize(("where", "key"), _all_bounds(), ids=[f"{w} {k}" for w, k in _all_bounds()])
def test_a_crd_bound_loosened_by_one_is_caught(loosened_crd: dict[str, Any], where: str, key: str) -> None:
    spec_schema = loosened_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    node, _, _ = next((n, k, w) for n, k, w in _bounds(spec_schema, "spec") if (w, k) == (where, key))
    node[key] = LOOSENED[key](node[key])
    cases = [case for case in crd_cases.boundary_cases(spec_schema) if case.source == id(node)]
    assert cases, f"no generated case tries {where}"
    problems = [problem for case in cases if (problem := crd_cases.verdict_problem(case)) is not None]
    assert problems, f"{where} {key} loosened to {node[key]!r}: every generated case still agrees"


# --- what the generators found, kept as fixed cases --------------------------------------------------

FOUND: list[tuple[str, dict[str, Any], str | None]] = [
    # parse_spec crashed (OverflowError) where the CRD's CEL duration() refuses: longer than Go's int64 ns.
    ("duration beyond Go", {"rollout": {"progressDeadline": "3" + "0" * 29 + "m"}},
     "spec.rollout.progressDeadline"),
    ("longest Go duration", {"rollout": {"progressDeadline": "2562047h"}}, None),
    # parse_spec crashed (decimal.Overflow) on an exponent the CRD's pattern let through.
    ("quantity exponent", {"serving": {"resources": {"limits": {"nvidia.com/gpu": 1, "cpu": "1e999999"}}}},
     "spec.serving.resources.limits[cpu]"),
    ("largest exponent", {"serving": {"resources": {"limits": {"nvidia.com/gpu": 1, "cpu": "1e99999"}}}},
     None),
    # An integer the API server cannot decode as int64.
    ("quantity beyond int64", {"serving": {"resources": {"limits": {"nvidia.com/gpu": 1, "cpu": 2**63}}}},
     "spec.serving.resources.limits[cpu]"),
    # Unbounded integers now stop at 2^53 - 1 on both sides.
    ("min requests 2^53", {"rollout": {"analysis": {"minRequests": 2**53}}},
     "spec.rollout.analysis.minRequests"),
    # A null field is "not set" to the API server (pruned before defaulting): the operator agrees.
    ("null replicas", {"serving": {"replicas": None}}, None),
    ("null section", {"autoscaling": None}, None),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "refused"), [c[1:] for c in FOUND], ids=[c[0] for c in FOUND])
def test_what_generation_found_stays_agreed(changes: dict[str, Any], refused: str | None) -> None:
    spec = {**crd_cases.FULL, **changes}
    for section, value in changes.items():
        spec[section] = {**crd_cases.FULL[section], **value} if isinstance(value, dict) else value
    crd, operator = crd_cases.judge_crd(spec), crd_cases.judge_spec(spec)
    if refused is None:
        assert (crd, operator) == (set(), set())
    else:
        assert refused in crd and refused in operator, (crd, operator)
