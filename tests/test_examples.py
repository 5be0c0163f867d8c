"""Every example in examples/: accepted by the CRD and the operator, rendered into objects the cluster accepts
and that fit together (selectors match pods, references resolve). One example is pinned by a golden file.

After an intended change, regenerate the golden file:
    MODELDEPLOY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_examples.py
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cel_rules
import pytest
import yaml

from modeldeploy.cli import main
from modeldeploy.rendering import Owner, RenderPlan, render_all
from modeldeploy.revision import compute_revision
from modeldeploy.spec import parse_spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
GOLDEN = Path(__file__).resolve().parent / "golden"
GOLDEN_EXAMPLE = "cnn-int8-hpa.yaml"
REQUIRED = {
    "cnn-int8-hpa.yaml",
    "transformer-keda-queue-time.yaml",
    "canary-gateway-api.yaml",
    "no-optimization-immediate.yaml",
}


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def test_the_four_documented_examples_exist() -> None:
    assert {path.name for path in EXAMPLES} >= REQUIRED


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_accepted_by_the_api_server_and_the_operator(path: Path) -> None:
    example = load(path)
    stored, problems = cel_rules.admit(example)
    assert problems == []
    # What the operator reads back from the API server parses to the same spec as the file itself.
    assert parse_spec(stored["spec"]) == parse_spec(example["spec"])


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_renders_objects_that_validate_and_fit_together(path: Path) -> None:
    example = load(path)
    spec = parse_spec(example["spec"])
    owner = Owner(example["metadata"]["name"], example["metadata"]["namespace"], uid="4f1c-uid")
    stable = compute_revision(spec)
    plan = RenderPlan(
        stable_revision=stable, canary_revision="c0ffee0123", canary_weight=10, optimize_revision=stable
    )
    objects = render_all(owner, spec, plan)
    for manifest in objects:
        assert manifest["metadata"]["namespace"] == owner.namespace
        if manifest["kind"] in cel_rules.BUILTIN_KINDS:
            cel_rules.validate_builtin(manifest)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for manifest in objects:
        by_kind.setdefault(manifest["kind"], []).append(manifest)
    deployments = {d["metadata"]["name"]: d for d in by_kind["Deployment"]}
    triton_pods = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
    job_pods = [j["spec"]["template"]["metadata"]["labels"] for j in by_kind["Job"]]
    for service in by_kind["Service"]:
        assert any(_selects(service["spec"]["selector"], pod) for pod in triton_pods), service["metadata"][
            "name"
        ]
        assert not any(_selects(service["spec"]["selector"], pod) for pod in job_pods)
    for autoscaler in by_kind.get("HorizontalPodAutoscaler", []) + by_kind.get("ScaledObject", []):
        assert autoscaler["spec"]["scaleTargetRef"]["name"] == f"{owner.name}-{stable}"
        assert "replicas" not in deployments[f"{owner.name}-{stable}"]["spec"]
    for monitor in by_kind.get("PodMonitor", []):
        assert all(_selects(monitor["spec"]["selector"]["matchLabels"], pod) for pod in triton_pods)
        assert not any(_selects(monitor["spec"]["selector"]["matchLabels"], pod) for pod in job_pods)
    services = {s["metadata"]["name"] for s in by_kind["Service"]}
    for route in by_kind.get("HTTPRoute", []):
        backends = route["spec"]["rules"][0]["backendRefs"]
        assert {ref["name"] for ref in backends} <= services
        assert sum(ref["weight"] for ref in backends) == 100


def test_examples_cover_every_autoscaling_engine_routing_and_strategy() -> None:
    specs = [parse_spec(load(path)["spec"]) for path in EXAMPLES]
    assert {s.autoscaling.engine for s in specs} >= {"none", "hpa", "keda"}
    assert {s.rollout.traffic_routing.type for s in specs} == {"replicas", "gatewayAPI"}
    assert {s.rollout.strategy for s in specs} == {"canary", "immediate"}
    assert {s.storage.uri.split(":")[0] for s in specs} == {"pvc", "s3"}


def test_golden_rendering(capsys: pytest.CaptureFixture[str]) -> None:
    """Any change to rendered output shows up here, and in review as a diff of tests/golden/."""
    assert main(["render", "-f", str(ROOT / "examples" / GOLDEN_EXAMPLE)]) == 0
    rendered = capsys.readouterr().out
    golden = GOLDEN / GOLDEN_EXAMPLE
    if os.environ.get("MODELDEPLOY_UPDATE_GOLDEN") == "1":
        golden.write_text(rendered)
    assert rendered == golden.read_text(), (
        f"rendering changed; if intended, regenerate {golden} (see module doc)"
    )
