"""Every object modeldeploy writes, judged by the real API it belongs to: the real kube-apiserver with the
KEDA, Prometheus Operator and Gateway API CRDs installed from the manifests their Go modules ship
(hack/controlplane/crds/go.mod pins the versions docs/install.md supports). A server-side dry run with
strict field validation refuses an unknown field, a wrong type and a value those CRDs' own rules refuse,
so a template that writes a field the third-party API does not know fails here."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import toolbin
import yaml
from cluster import Cluster
from test_controlplane_api import EXAMPLES, ensure_namespaces

from modeldeploy.cluster.thirdparty import CRD_MANIFESTS, pinned_versions
from modeldeploy.rendering import Owner, RenderPlan, render_all
from modeldeploy.revision import compute_revision
from modeldeploy.spec import parse_spec

REPO_ROOT = toolbin.REPO_ROOT
THIRD_PARTY_KINDS = {"ScaledObject", "PodMonitor", "HTTPRoute"}
THIRD_PARTY_GROUPS = {"keda.sh", "monitoring.coreos.com", "gateway.networking.k8s.io"}


def dry_run(cluster: Cluster, objects: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """`kubectl apply --dry-run=server --validate=strict` of `objects` (strict: unknown fields refused)."""
    text = "---\n".join(yaml.safe_dump(obj) for obj in objects)
    return cluster.kubectl(
        "apply", "--dry-run=server", "--server-side", "--validate=strict", "-f", "-", input=text, check=False
    )


def rendered(example: Path, *, canary: bool) -> list[dict[str, Any]]:
    """What the operator applies for an example: its current revision, or mid-canary at 25%."""
    doc = yaml.safe_load(example.read_text())
    spec = parse_spec(doc["spec"])
    owner = Owner(doc["metadata"]["name"], doc["metadata"]["namespace"])
    stable = compute_revision(spec)
    plan = (
        RenderPlan(stable_revision=stable, canary_revision="c0ffee0123", canary_weight=25)
        if canary
        else RenderPlan(stable_revision=stable, optimize_revision=stable)
    )
    return render_all(owner, spec, plan)


@pytest.mark.parametrize("canary", [False, True], ids=["stable", "mid-canary"])
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_every_rendered_object_is_accepted_by_the_real_api(
    control_plane: Cluster, example: Path, canary: bool
) -> None:
    ensure_namespaces(control_plane, example)
    objects = rendered(example, canary=canary)
    result = dry_run(control_plane, objects)
    assert result.returncode == 0, result.stderr
    accepted = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(accepted) == len(objects), result.stdout


def test_the_cli_rendering_of_every_example_is_accepted(control_plane: Cluster) -> None:
    """As a user would check it: `modeldeploy render -f EXAMPLE | kubectl apply --dry-run=server -f -`."""
    for example in EXAMPLES:
        ensure_namespaces(control_plane, example)
        render = subprocess.run(
            [str(Path(sys.executable).parent / "modeldeploy"), "render", "-f", str(example)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO_ROOT / "tests",
        )
        result = control_plane.kubectl(
            "apply", "--dry-run=server", "--server-side", "--validate=strict", "-f", "-", input=render.stdout
        )
        assert "(server dry run)" in result.stdout


def test_examples_exercise_every_third_party_kind() -> None:
    kinds = {obj["kind"] for example in EXAMPLES for obj in rendered(example, canary=True)}
    assert kinds >= THIRD_PARTY_KINDS


def _third_party_objects() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for example in EXAMPLES:
        for obj in rendered(example, canary=True):
            if obj["kind"] in THIRD_PARTY_KINDS:
                found.setdefault(obj["kind"], obj)
    return found


def _with_bad_field(obj: dict[str, Any], kind: str) -> tuple[dict[str, Any], str]:
    """`obj` with a misspelt field, and that field's name."""
    broken = copy.deepcopy(obj)
    if kind == "PodMonitor":
        broken["spec"]["podMetricsEndpoints"][0]["scrapeEvery"] = "5s"  # the field is `interval`
        return broken, "scrapeEvery"
    if kind == "ScaledObject":
        broken["spec"]["maxReplicas"] = 9  # the field is `maxReplicaCount`
        return broken, "maxReplicas"
    broken["spec"]["rules"][0]["backendRefs"][0]["weights"] = 50  # the field is `weight`
    return broken, "weights"


@pytest.mark.parametrize("kind", sorted(THIRD_PARTY_KINDS))
def test_a_field_the_third_party_crd_does_not_know_is_refused(
    control_plane: Cluster, cluster_namespace: str, kind: str
) -> None:
    good = _third_party_objects()[kind]
    good["metadata"]["namespace"] = cluster_namespace
    assert dry_run(control_plane, [good]).returncode == 0
    broken, field = _with_bad_field(good, kind)
    result = dry_run(control_plane, [broken])
    assert result.returncode != 0
    assert f".{field}: field not declared in schema" in result.stderr, result.stderr


def test_the_gateway_apis_own_rules_are_enforced(control_plane: Cluster, cluster_namespace: str) -> None:
    """Gateway API's CEL rule: a PathPrefix match must be an absolute path (our template writes `/`)."""
    route = _third_party_objects()["HTTPRoute"]
    route["metadata"]["namespace"] = cluster_namespace
    route["spec"]["rules"][0]["matches"][0]["path"]["value"] = "models"
    result = dry_run(control_plane, [route])
    assert result.returncode != 0
    assert "must be an absolute path" in result.stderr, result.stderr


def test_a_wrong_type_is_refused(control_plane: Cluster, cluster_namespace: str) -> None:
    scaled = _third_party_objects()["ScaledObject"]
    scaled["metadata"]["namespace"] = cluster_namespace
    scaled["spec"]["minReplicaCount"] = "two"
    result = dry_run(control_plane, [scaled])
    assert result.returncode != 0
    assert "minReplicaCount" in result.stderr, result.stderr


def test_pinned_versions_are_the_documented_ones() -> None:
    """README and docs/install.md name the supported versions, which are the pinned modules'."""
    docs = (REPO_ROOT / "docs" / "install.md").read_text() + (REPO_ROOT / "README.md").read_text()
    for module, version in pinned_versions().items():
        assert version in docs, f"{module} {version} is not named in README.md / docs/install.md"
    assert set(pinned_versions()) == set(CRD_MANIFESTS)


def test_the_crds_come_from_go_modules_not_from_this_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.yaml", "*.yml"], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    ).stdout.split()
    copied = [
        path
        for path in tracked
        for doc in [_first_doc(REPO_ROOT / path)]
        if doc.get("kind") == "CustomResourceDefinition"
        and doc.get("spec", {}).get("group")
        in {"keda.sh", "monitoring.coreos.com", "gateway.networking.k8s.io"}
    ]
    assert copied == []


def _first_doc(path: Path) -> dict[str, Any]:
    try:
        doc = next(iter(yaml.safe_load_all(path.read_text())), None)
    except (yaml.YAMLError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}
