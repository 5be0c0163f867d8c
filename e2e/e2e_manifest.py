"""The end-to-end ModelDeployment: examples/cpu-kind.yaml with e2e/manifests/modeldeployment.yaml on top,
and the operator-wide defaults the e2e chart install gives (`--set imageRegistry=... --set accelerator=cpu`).

Shared by e2e/test_e2e.py (in the kind run) and tests/test_helm_e2e.py (without a cluster).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from modeldeploy import __version__
from modeldeploy.defaults import SpecDefaults

E2E_DIR = Path(__file__).resolve().parent
EXAMPLE = E2E_DIR.parent / "examples" / "cpu-kind.yaml"
OVERLAY = E2E_DIR / "manifests" / "modeldeployment.yaml"
# e2e/run.sh builds the images under this registry and installs the chart with it.
IMAGE_REGISTRY = "localhost/modeldeploy"


def e2e_manifest() -> dict[str, Any]:
    example: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    overlay: dict[str, Any] = yaml.safe_load(OVERLAY.read_text())
    manifest = copy.deepcopy(example)
    manifest["metadata"] = overlay["metadata"]
    manifest["spec"].pop("accelerator")  # the chart's accelerator=cpu must be enough
    manifest["spec"].update(overlay["spec"])
    return manifest


def chart_defaults() -> SpecDefaults:
    registry = os.environ.get("E2E_IMAGE_REGISTRY", IMAGE_REGISTRY)
    return SpecDefaults(optimizer_image=f"{registry}/optimizer:{__version__}", accelerator="cpu")
