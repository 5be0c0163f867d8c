"""The real kube-apiserver judges what the fast layers (cel_rules, kubernetes-validate) only approximate:
the CRD itself (structural schema, CEL cost limits, defaults checked against the rules), every example, and
every row of test_crd.py's table. Each test here fails when the CRD or an example breaks on a real server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import test_crd
import yaml
from cluster import Cluster
from toolbin import REPO_ROOT

from modeldeploy.cluster.rest import ApiError
from modeldeploy.spec import parse_spec

CRD_FILES = [
    REPO_ROOT / "crds" / "modeldeployment.yaml",
    REPO_ROOT / "helm/modeldeploy/crds/modeldeployment.yaml",
]
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
GROUP_PATH = "/apis/modeldeploy.io/v1alpha1"


@pytest.mark.parametrize("crd", CRD_FILES, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_crd_is_admitted_by_server_side_apply(control_plane: Cluster, crd: Path) -> None:
    result = control_plane.kubectl("apply", "--server-side", "--field-manager=crd-test", "-f", str(crd))
    assert "serverside-applied" in result.stdout
    stored = control_plane.request(
        "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/modeldeployments.modeldeploy.io"
    )
    established = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
    assert established.get("Established") == "True", stored["status"]


def ensure_namespaces(cluster: Cluster, manifest: Path) -> None:
    """The namespaces an example names, as its user would have created them."""
    for doc in yaml.safe_load_all(manifest.read_text()):
        namespace = (doc or {}).get("metadata", {}).get("namespace")
        if namespace and cluster.get(f"/api/v1/namespaces/{namespace}") is None:
            cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_every_example_passes_a_server_side_dry_run(control_plane: Cluster, example: Path) -> None:
    ensure_namespaces(control_plane, example)
    result = control_plane.kubectl("apply", "--dry-run=server", "--server-side", "-f", str(example))
    assert "(server dry run)" in result.stdout, result.stdout


def _dry_run(cluster: Cluster, namespace: str, doc: dict[str, Any]) -> str | None:
    """The API server's refusal message for `doc`, or None when it would store it."""
    body = json.loads(json.dumps(doc))
    body["metadata"]["namespace"] = namespace
    try:
        cluster.request(
            "POST",
            f"{GROUP_PATH}/namespaces/{namespace}/modeldeployments",
            body,
            # As kubectl sends it: unknown fields are an error, not silently pruned.
            params={"dryRun": "All", "fieldValidation": "Strict"},
        )
    except ApiError as error:
        assert error.status in (400, 422), error  # 400: strict decoding (unknown field)
        message: str = json.loads(error.body)["message"]
        return message
    return None


def _table() -> list[Any]:
    rows = [
        pytest.param(test_crd.document(changes), refused, id=case)
        for case, changes, refused in test_crd.CASES
    ]
    rows += [
        pytest.param(test_crd.document(name=name), refused, id=f"name {name[:20]}")
        for name, refused in test_crd.NAME_CASES
    ]
    return rows


@pytest.mark.parametrize(("doc", "refused"), _table())
def test_the_real_server_judges_the_crd_table_as_the_fast_layer_does(
    control_plane: Cluster, cluster_namespace: str, doc: dict[str, Any], refused: str | None
) -> None:
    message = _dry_run(control_plane, cluster_namespace, doc)
    if refused is None:
        assert message is None, message
    else:
        assert message is not None, f"admitted, but {refused} should be refused"
        # The server writes a map key as `.key` where the operator writes `[key]`.
        assert re.sub(r"\[([^\]0-9][^\]]*)\]", r".\1", refused) in message, message


def test_a_refusal_names_the_field_and_the_reason(control_plane: Cluster, cluster_namespace: str) -> None:
    doc = test_crd.document({"rollout": {"steps": [50, 20]}})
    message = _dry_run(control_plane, cluster_namespace, doc)
    assert message is not None
    assert "spec.rollout.steps" in message
    assert "must be strictly increasing" in message


def test_server_defaults_equal_the_documented_defaults(
    control_plane: Cluster, cluster_namespace: str
) -> None:
    """What the real server stores for a minimal object is what the spec model assumes."""
    doc = test_crd.document()
    doc["metadata"]["namespace"] = cluster_namespace
    stored = control_plane.request(
        "POST", f"{GROUP_PATH}/namespaces/{cluster_namespace}/modeldeployments", doc, params={"dryRun": "All"}
    )
    expected = parse_spec(doc["spec"]).section_json("rollout", "autoscaling", "monitoring")
    for section, values in expected.items():
        for key, value in values.items():
            assert stored["spec"][section][key] == value, (section, key)


def test_every_example_is_admitted_for_real(control_plane: Cluster, cluster_namespace: str) -> None:
    """Not only a dry run: the objects are stored and read back with the same spec."""
    for example in EXAMPLES:
        for doc in yaml.safe_load_all(example.read_text()):
            if doc and doc.get("kind") == "ModelDeployment":
                doc["metadata"]["namespace"] = cluster_namespace
                stored = control_plane.request(
                    "POST", f"{GROUP_PATH}/namespaces/{cluster_namespace}/modeldeployments", doc
                )
                assert stored["spec"]["model"] == {**stored["spec"]["model"], **doc["spec"]["model"]}
