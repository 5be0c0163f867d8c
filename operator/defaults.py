"""Operator-wide defaults: what a ModelDeployment gets for the fields it leaves out.

The images, the accelerator (GPU or CPU) and the Prometheus the operator talks to differ per cluster,
not per ModelDeployment, so they are not CRD defaults: the Helm chart sets them once (values
`optimizer.image`, `serving.image`, `accelerator`, `prometheus.*`, `podMonitor.labels`) and passes them
to `modeldeploy run`, which applies them here before the spec is validated. A ModelDeployment that sets
a field keeps its own value. `apply_defaults` is pure: it returns a new raw spec, never mutates its input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modeldeploy import __version__

DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.08-py3"
DEFAULT_OPTIMIZER_IMAGE = f"ghcr.io/modeldeploy/optimizer:{__version__}"
# The optimizer built with TensorRT (Dockerfile TENSORRT=true, its TensorRT that of DEFAULT_TRITON_IMAGE):
# the default for compile target tensorrt, which the CPU image cannot do.
DEFAULT_OPTIMIZER_TENSORRT_IMAGE = f"{DEFAULT_OPTIMIZER_IMAGE}-tensorrt"
DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"
GPU_RESOURCE = "nvidia.com/gpu"

Accelerator = Literal["gpu", "cpu"]


@dataclass(frozen=True)
class PrometheusAuthRef:
    """A Secret holding Prometheus credentials: `token` (bearerToken) or `username`/`password`
    (basicAuth), and optionally `ca.crt` (a PEM bundle that verifies an https:// Prometheus)."""

    namespace: str
    secret_name: str
    type: Literal["bearerToken", "basicAuth", "none"] = "bearerToken"


@dataclass(frozen=True)
class SpecDefaults:
    optimizer_image: str = DEFAULT_OPTIMIZER_IMAGE
    optimizer_tensorrt_image: str = DEFAULT_OPTIMIZER_TENSORRT_IMAGE
    triton_image: str = DEFAULT_TRITON_IMAGE
    accelerator: Accelerator = "gpu"
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    # Sent only to `prometheus_url`: a ModelDeployment naming another Prometheus never gets these.
    prometheus_auth: PrometheusAuthRef | None = None
    pod_monitor_labels: Mapping[str, str] = field(default_factory=dict)


BUILTIN = SpecDefaults()


def gpu_tolerations() -> list[dict[str, Any]]:
    return [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]


def optimizer_resources(accelerator: Accelerator) -> dict[str, Any]:
    if accelerator == "cpu":
        return {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    return {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "16Gi", GPU_RESOURCE: "1"}}


def serving_resources(accelerator: Accelerator) -> dict[str, Any]:
    if accelerator == "cpu":
        return {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    return {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "8Gi", GPU_RESOURCE: "1"}}


def apply_defaults(raw: Mapping[str, Any], defaults: SpecDefaults = BUILTIN) -> dict[str, Any]:
    """`raw` (a ModelDeployment's spec, camelCase) with the operator-wide defaults filled in.

    Sections that are not objects are left alone: validation reports them with their field path.
    """
    spec = dict(raw)
    accelerator = spec.get("accelerator", defaults.accelerator)
    if accelerator not in ("gpu", "cpu"):
        return spec  # validation names spec.accelerator; the defaults would be guesses
    spec["accelerator"] = accelerator
    tolerations = gpu_tolerations() if accelerator == "gpu" else []
    optimization = _section(spec, "optimization")
    if optimization is not None:
        compile_section = optimization.get("compile")
        tensorrt = isinstance(compile_section, Mapping) and compile_section.get("target") == "tensorrt"
        optimization.setdefault(
            "image", defaults.optimizer_tensorrt_image if tensorrt else defaults.optimizer_image
        )
        optimization.setdefault("resources", optimizer_resources(accelerator))
        optimization.setdefault("tolerations", tolerations)
    serving = _section(spec, "serving")
    if serving is not None:
        serving.setdefault("image", defaults.triton_image)
        serving.setdefault("resources", serving_resources(accelerator))
        serving.setdefault("tolerations", tolerations)
        group = _section(serving, "instanceGroup")
        if group is not None:
            group.setdefault("kind", accelerator)
    monitoring = _section(spec, "monitoring")
    if monitoring is not None:
        monitoring.setdefault("prometheusUrl", defaults.prometheus_url)
        labels = monitoring.get("podMonitorLabels", {})
        if isinstance(labels, Mapping) and defaults.pod_monitor_labels:
            monitoring["podMonitorLabels"] = {**defaults.pod_monitor_labels, **labels}
    return spec


def _section(parent: dict[str, Any], key: str) -> dict[str, Any] | None:
    """A copy of `parent[key]` stored back into `parent` (empty when absent); None if not an object."""
    value = parent.get(key, {})
    if not isinstance(value, Mapping):
        return None
    copied = dict(value)
    parent[key] = copied
    return copied


def prometheus_auth_for(
    url: str, own: PrometheusAuthRef | None, defaults: SpecDefaults
) -> PrometheusAuthRef | None:
    """The credentials an analysis sends to `url`: the ModelDeployment's own Secret when it names one;
    else the chart-wide Secret, but only when `url` is the chart-wide Prometheus (never to a URL a
    namespace user chose)."""
    if own is not None:
        return own
    if defaults.prometheus_auth is not None and url.rstrip("/") == defaults.prometheus_url.rstrip("/"):
        return defaults.prometheus_auth
    return None
