"""The cluster-free parts of the end-to-end setup (e2e/ itself needs Docker and kind, which CI here lacks).

What can break without a cluster is checked here, so the kind run does not fail late on it: the e2e
ModelDeployment is valid for the CRD and the operator's spec model, its updates really are new revisions,
the chart installs with the e2e values, run.sh builds the images the chart and the spec expect, and the
GitHub workflows call scripts that exist.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import cel_rules
import kubernetes_validate
import pytest
import toolbin
import yaml
from e2e_manifest import EXAMPLE, IMAGE_REGISTRY, chart_defaults, e2e_manifest

from modeldeploy import __version__
from modeldeploy.revision import compute_revision
from modeldeploy.spec import GPU_RESOURCE, parse_spec

REPO_ROOT = Path(__file__).resolve().parent.parent
E2E = REPO_ROOT / "e2e"
CHART = REPO_ROOT / "helm" / "modeldeploy"
RUN_SH = E2E / "run.sh"
WORKFLOWS = REPO_ROOT / ".github" / "workflows"


def test_e2e_model_deployment_is_valid_for_the_crd_and_the_operator() -> None:
    manifest = e2e_manifest()
    # What the API server would do: CRD schema, defaults, CEL rules (emulated by tests/cel_rules.py).
    _, problems = cel_rules.admit(manifest)
    assert problems == []
    # The chart's --set accelerator=cpu (chart_defaults) is what keeps GPUs out: the manifest says nothing.
    assert "accelerator" not in manifest["spec"]
    assert parse_spec(manifest["spec"]).serving.instance_group.kind == "gpu"
    spec = parse_spec(manifest["spec"], chart_defaults())
    # kind has no GPUs: nothing may ask for one or wait for a GPU taint.
    for resources in (spec.optimization.resources, spec.serving.resources):
        assert GPU_RESOURCE not in (resources.limits or {})
        assert GPU_RESOURCE not in (resources.requests or {})
    assert spec.optimization.tolerations == []
    assert spec.serving.tolerations == []
    assert spec.serving.instance_group.kind == "cpu"


def test_e2e_updates_are_new_revisions() -> None:
    # test_e2e.py changes serving.maxBatchSize twice; each change must start a canary of a new revision.
    revisions = set()
    for max_batch_size in (None, 4, 2):
        manifest = e2e_manifest()
        if max_batch_size is not None:
            manifest["spec"]["serving"]["maxBatchSize"] = max_batch_size
        revisions.add(compute_revision(parse_spec(manifest["spec"], chart_defaults())))
    assert len(revisions) == 3


def test_e2e_canary_is_driven_by_annotations_not_by_the_clock() -> None:
    # Without Prometheus in the cluster, analysis errors would roll back on their own; the test promotes and
    # aborts by annotation, so the manifest must keep the analysis from deciding first.
    spec = parse_spec(e2e_manifest()["spec"], chart_defaults())
    assert spec.rollout.strategy == "canary"
    assert spec.rollout.interval.total_seconds() >= 1800
    assert spec.rollout.analysis.max_consecutive_errors >= 50
    assert spec.rollout.analysis.failure_threshold >= 50


def test_e2e_storage_claim_matches_the_model_deployment() -> None:
    claim = yaml.safe_load((E2E / "manifests" / "storage.yaml").read_text())
    kubernetes_validate.validate(claim, "1.37", strict=True)
    manifest = e2e_manifest()
    assert "namespace" not in claim["metadata"]  # run.sh applies it with -n, the example's users too
    assert '-n "$namespace" apply -f e2e/manifests/storage.yaml' in RUN_SH.read_text()
    assert manifest["spec"]["storage"]["uri"].startswith(f"pvc://{claim['metadata']['name']}/")


def test_chart_installs_with_the_e2e_values() -> None:
    values_file = E2E / "values-e2e.yaml"
    result = subprocess.run(
        [
            str(toolbin.helm_path()),
            "template",
            "modeldeploy",
            str(CHART),
            "--namespace",
            "modeldeploy-system",
            "--values",
            str(values_file),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    objects = [obj for obj in yaml.safe_load_all(result.stdout) if obj]
    namespace = e2e_manifest()["metadata"]["namespace"]
    roles = [obj for obj in objects if obj["kind"] == "Role"]
    assert [role["metadata"]["namespace"] for role in roles] == [namespace]
    (deployment,) = (obj for obj in objects if obj["kind"] == "Deployment")
    # run.sh reads the operator logs from deployment/modeldeploy in the release namespace.
    assert deployment["metadata"]["name"] == "modeldeploy"
    assert f'-n "$release_namespace" logs deployment/{deployment["metadata"]["name"]}' in RUN_SH.read_text()
    assert deployment["spec"]["replicas"] == 2


def test_run_sh_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(RUN_SH)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert RUN_SH.stat().st_mode & 0o111, "e2e/run.sh is not executable"


def test_run_sh_builds_the_images_the_chart_and_the_spec_expect() -> None:
    script = RUN_SH.read_text()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart["appVersion"] == __version__, "Chart appVersion must be the package version"
    operator_image = re.search(r"^operator_image=(\S+)$", script, re.MULTILINE)
    optimizer_image = re.search(r"^optimizer_image=(\S+)$", script, re.MULTILINE)
    assert operator_image and optimizer_image
    assert re.search(rf"^registry={re.escape(IMAGE_REGISTRY)}$", script, re.MULTILINE)
    assert values["image"]["repository"] == ""  # so the operator image comes from imageRegistry
    assert operator_image.group(1) == "$registry/operator:$version"
    assert optimizer_image.group(1).replace("$registry", IMAGE_REGISTRY).replace("$version", __version__) == (
        chart_defaults().optimizer_image
    )
    # Only --set flags for the registry and CPU mode on top of the e2e values (what a new user types).
    assert '--set imageRegistry="$registry" --set accelerator=cpu' in script
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for target in re.findall(r"--target (\S+)", script):
        assert re.search(rf"^FROM \S+ AS {re.escape(target)}$", dockerfile, re.MULTILINE), target
    assert "--values e2e/values-e2e.yaml" in script
    assert "e2e/manifests/storage.yaml" in script


def test_run_sh_never_runs_python_from_the_repo_root() -> None:
    # The folder operator/ shadows the standard library module when Python starts in the repo root.
    for line in RUN_SH.read_text().splitlines():
        if "python" in line and "-c" in line:
            assert "cd " in line, line


def workflow(name: str) -> dict[str, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    loaded["on"] = loaded.pop(True, loaded.get("on"))  # YAML 1.1 reads the key `on` as true
    return loaded


def workflow_steps(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in document["jobs"].values() for step in job["steps"]]


@pytest.mark.parametrize(("name", "script"), [("ci.yaml", ".ci/run"), ("e2e.yaml", "e2e/run.sh")])
def test_workflow_runs_an_existing_script(name: str, script: str) -> None:
    document = workflow(name)
    assert document["on"], name
    runs = [step.get("run", "") for step in workflow_steps(document)]
    assert any(run.strip().endswith(script) for run in runs), runs
    assert (REPO_ROOT / script).is_file()
    for job in document["jobs"].values():
        assert job.get("timeout-minutes"), f"{name}: a job without a timeout"


@pytest.mark.parametrize("name", ["ci.yaml", "e2e.yaml"])
def test_workflow_actions_are_pinned(name: str) -> None:
    for step in workflow_steps(workflow(name)):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", step["uses"]), step["uses"]


def test_e2e_suite_is_not_collected_by_the_unit_run() -> None:
    # CI (no Docker) runs pytest on tests/ only: the e2e suite would fail there for lack of a cluster.
    import tomllib  # noqa: PLC0415

    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert config["testpaths"] == ["tests"]
    assert (E2E / "test_e2e.py").is_file()


def test_kubectl_for_the_e2e_run_is_the_real_binary() -> None:
    # run.sh and test_e2e.py drive the cluster with this kubectl (tests/toolbin.py extracts it).
    result = subprocess.run(
        [str(toolbin.kubectl_path()), "version", "--client", "-o", "yaml"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    client = yaml.safe_load(result.stdout)["clientVersion"]
    assert (client["major"], client["minor"]) == ("1", "37")


def test_e2e_uses_the_cpu_example_model_that_the_optimizer_image_ships() -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    manifest = e2e_manifest()
    for section in ("model", "optimization", "serving"):
        assert manifest["spec"][section] == example["spec"][section]
    assert example["spec"]["model"]["uri"] == "file:///opt/modeldeploy/samples/cnn.onnx"
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "sample_model import main; main()' \\\n      /opt/modeldeploy/samples/cnn.onnx" in dockerfile
    # No model is downloaded at run time: no http(s) model URI anywhere in the e2e.
    assert "https://" not in manifest["spec"]["model"]["uri"]
    assert "github.com/onnx/models" not in RUN_SH.read_text()


def test_disk_check_counts_the_serving_image_layers_before_the_run() -> None:
    from image_disk import GIB, compressed_size, required_bytes  # noqa: PLC0415

    inspected = [
        {
            "Descriptor": {"platform": {"architecture": "arm64", "os": "linux"}},
            "SchemaV2Manifest": {"layers": [{"size": 1}]},
        },
        {
            "Descriptor": {"platform": {"architecture": "amd64", "os": "linux"}},
            "SchemaV2Manifest": {"layers": [{"size": 4 * GIB}, {"size": 2 * GIB}]},
        },
    ]
    assert compressed_size(inspected) == 6 * GIB
    # A 6 GiB compressed image does not fit a runner with 14 GiB free; it fits after freeing space.
    assert required_bytes(6 * GIB) > 14 * GIB
    assert required_bytes(6 * GIB) < 40 * GIB
    with pytest.raises(ValueError, match="no amd64 layers"):
        compressed_size(inspected[:1])
    assert 'e2e/image_disk.py "$triton_image"' in RUN_SH.read_text()
