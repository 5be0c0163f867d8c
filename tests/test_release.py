"""The release is one version everywhere, and the workflows are valid GitHub Actions.

Tag vX.Y.Z → package `__version__` → chart appVersion → image tags the release workflow pushes → the
images the chart and the operator default to (registry, name, tag, the `-tensorrt` variant) → the
TensorRT the optimizer is built with and the one in the default Triton image. And `actionlint` (the real
linter, built from its Go module) passes on every workflow.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from realparts import missing

from modeldeploy import __version__
from modeldeploy.defaults import (
    DEFAULT_OPTIMIZER_IMAGE,
    DEFAULT_OPTIMIZER_TENSORRT_IMAGE,
    DEFAULT_TRITON_IMAGE,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
CHART = REPO_ROOT / "helm" / "modeldeploy"
# The TensorRT each Triton release ships (NVIDIA's framework support matrix): an engine built by one
# TensorRT version loads only in the same version.
TRITON_TENSORRT = {
    "24.05": "10.0.1",
    "24.06": "10.1.0",
    "24.07": "10.2.0",
    "24.08": "10.3.0",
    "24.09": "10.4.0",
}
# Where `go install github.com/rhysd/actionlint/cmd/actionlint@latest` puts it for this project.
ACTIONLINT_CACHE = Path.home() / ".cache" / "modeldeploy" / "actionlint" / "bin" / "actionlint"


def workflow(name: str) -> dict[str, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    loaded["on"] = loaded.pop(True, loaded.get("on"))  # YAML 1.1 reads the key `on` as true
    return loaded


def chart_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def test_package_chart_and_crd_are_one_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__
    crd = (REPO_ROOT / "crds" / "modeldeployment.yaml").read_text()
    # No image (or its tag) is a CRD default any more: a registry change is one chart value.
    assert "ghcr.io/modeldeploy" not in crd
    assert "tritonserver:" not in crd


def test_release_publishes_exactly_the_images_the_chart_and_the_operator_default_to() -> None:
    release = workflow("release.yaml")
    registry = release["env"]["REGISTRY"]
    values = chart_values()
    assert values["imageRegistry"] == registry
    assert values["image"]["repository"] == "" and values["image"]["tag"] == ""
    assert values["optimizer"]["image"] == {"repository": "", "tag": ""}
    assert f"{registry}/optimizer:{__version__}" == DEFAULT_OPTIMIZER_IMAGE
    assert f"{DEFAULT_OPTIMIZER_IMAGE}-tensorrt" == DEFAULT_OPTIMIZER_TENSORRT_IMAGE
    images = release["jobs"]["images"]
    (build,) = [step for step in images["steps"] if str(step.get("uses", "")).startswith("docker/build-push")]
    assert build["with"]["tags"].startswith("${{ env.REGISTRY }}/${{ matrix.image }}:")
    assert build["with"]["tags"].endswith("${{ needs.version.outputs.version }}${{ matrix.suffix }}")
    published = {
        (entry["image"], entry["suffix"], entry["target"], entry["tensorrt"])
        for entry in images["strategy"]["matrix"]["include"]
    }
    assert published == {
        ("operator", "", "operator", "false"),
        ("optimizer", "", "optimizer", "false"),
        ("optimizer", "-tensorrt", "optimizer", "true"),
    }
    multi_arch = {
        e["image"] + e["suffix"] for e in images["strategy"]["matrix"]["include"] if "arm64" in e["platforms"]
    }
    assert multi_arch == {"operator", "optimizer"}
    # The Dockerfile has the targets the matrix builds.
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for _, _, target, _ in published:
        assert re.search(rf"^FROM \S+ AS {target}$", dockerfile, re.MULTILINE), target


def test_release_tag_is_checked_against_package_and_chart() -> None:
    release = workflow("release.yaml")
    assert release["on"] == {"push": {"tags": ["v[0-9]+.[0-9]+.[0-9]+"]}}
    script = release["jobs"]["version"]["steps"][-1]["run"]
    assert "operator/__init__.py" in script and "helm/modeldeploy/Chart.yaml" in script
    # The sed expressions really extract the versions from today's files.
    for path, expression in (
        ("operator/__init__.py", r"s/^__version__ = \"\(.*\)\"$/\1/p"),
        ("helm/modeldeploy/Chart.yaml", r"s/^appVersion: \"\(.*\)\"$/\1/p"),
    ):
        assert expression.replace('\\"', '"') in script
        found = subprocess.run(
            ["sed", "-n", expression.replace('\\"', '"'), str(REPO_ROOT / path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert found == __version__, path


def test_tensorrt_of_the_optimizer_matches_the_default_triton_image() -> None:
    assert chart_values()["serving"]["image"] == DEFAULT_TRITON_IMAGE
    triton_tag = re.fullmatch(r"nvcr\.io/nvidia/tritonserver:(\d\d\.\d\d)-py3", DEFAULT_TRITON_IMAGE)
    assert triton_tag, DEFAULT_TRITON_IMAGE
    packages = re.search(
        r'^ARG GPU_PACKAGES="([^"]*)"$', (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE
    )
    assert packages
    pinned = re.search(r"tensorrt-cu12==(\S+)", packages.group(1))
    assert pinned, "the TensorRT wheel must be pinned"
    assert pinned.group(1) == TRITON_TENSORRT[triton_tag.group(1)]


def test_e2e_workflow_builds_the_dockerfile() -> None:
    e2e = workflow("e2e.yaml")
    assert "Dockerfile" in e2e["on"]["pull_request"]["paths"]
    run_sh = (REPO_ROOT / "e2e" / "run.sh").read_text()
    assert "docker build --target operator" in run_sh and "docker build --target optimizer" in run_sh


def actionlint() -> str:
    found = shutil.which("actionlint") or (str(ACTIONLINT_CACHE) if ACTIONLINT_CACHE.is_file() else None)
    if found is None:
        install = "go install github.com/rhysd/actionlint/cmd/actionlint@latest"
        missing("actionlint", f"install it: GOBIN={ACTIONLINT_CACHE.parent} {install}")
    return found


@pytest.mark.parametrize("name", sorted(path.name for path in WORKFLOWS.glob("*.yaml")))
def test_workflow_passes_actionlint(name: str) -> None:
    # actionlint also runs shellcheck on every `run:` script when shellcheck is installed.
    extra = [] if shutil.which("shellcheck") else ["-shellcheck="]
    result = subprocess.run(
        [actionlint(), "-no-color", *extra, "-pyflakes=", str(WORKFLOWS / name)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPO_ROOT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
