"""Every child object of a ModelDeployment, rendered from `templates/*.yaml.j2`.

Pure: (owner, spec, revision context) → plain dicts ready for server-side apply. Python prepares every
value; templates only lay them out. The jinja2 environment's `finalize` writes each `{{ }}` as a YAML
double-quoted scalar or flow collection with every non-printable-ASCII character escaped, so a user value
(newlines, `---`, `{{ }}`, `&anchors`, `!!tags`, quotes) can only ever be the value of its own field.
The rendered text is parsed back (single document, mapping) and null fields are dropped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import jinja2
import yaml

from modeldeploy.quantities import format_quantity
from modeldeploy.revision import revision_json
from modeldeploy.scaling import scaling_metric
from modeldeploy.spec import ModelDeploymentSpec, ResourceRequirements, Toleration

GROUP, VERSION, PLURAL, KIND = "modeldeploy.io", "v1alpha1", "modeldeployments", "ModelDeployment"
API_VERSION = f"{GROUP}/{VERSION}"
# The labels the children carry; the operator's indexes select its own children by them.
INSTANCE_LABEL = "app.kubernetes.io/instance"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "modeldeploy"
REVISION_LABEL = "modeldeploy.io/revision"
TRACK_LABEL = "modeldeploy.io/track"
HTTP_PORT = 8000
# Where the Job finds pvc://CLAIM/PATH: the optimizer reads `$MODELDEPLOY_PVC_ROOT/CLAIM/PATH`.
PVC_ROOT = "/mnt/pvc"
# Where Triton finds a revision's repository on a PVC (mounted with subPath PREFIX/NS/NAME/REV).
TRITON_REPOSITORY_MOUNT = "/models"

Track = Literal["stable", "canary"]


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment the children belong to."""

    name: str
    namespace: str
    # None (CLI preview): no ownerReferences; else the reference is controller=True, blockOwnerDeletion=True.
    uid: str | None = None


@dataclass(frozen=True)
class RenderPlan:
    """What the CLI preview shows: which revisions run, at which weight, and which one is optimized."""

    stable_revision: str
    canary_revision: str | None = None
    canary_weight: int = 0
    optimize_revision: str | None = None


# ---------------------------------------------------------------------------------------------------------
# Writing values into YAML


def _quoted(text: str) -> str:
    # YAML double-quoted scalar with everything outside printable ASCII escaped: line breaks (including
    # NEL, LS, PS), tabs and control characters can then never change the document's structure.
    parts = ['"']
    for character in text:
        code = ord(character)
        if character in '"\\':
            parts.append("\\" + character)
        elif 0x20 <= code < 0x7F:
            parts.append(character)
        elif code <= 0xFF:
            parts.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(f"\\U{code:08x}")
    parts.append('"')
    return "".join(parts)


def yaml_value(value: Any) -> str:
    """`value` as one YAML flow node that parses back to exactly `value`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot render the number {value!r}")
        return json.dumps(value)
    if isinstance(value, str):
        return _quoted(value)
    if isinstance(value, Mapping):
        # `? ` makes each key explicit: an implicit YAML key may not be longer than 1024 characters.
        return "{" + ", ".join(f"? {_quoted(str(k))}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(yaml_value(item) for item in value) + "]"
    raise TypeError(f"cannot render a {type(value).__name__} into YAML")


_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    finalize=yaml_value,
    keep_trailing_newline=True,
)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


# libyaml's loader where PyYAML has it: every reconcile renders its children, and the pure-Python parser
# was 40% of the operator's CPU in benchmarks/reconcile.py. Both resolve tags the same (safe) way.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _render(template: str, **context: Any) -> dict[str, Any]:
    text = _TEMPLATES.get_template(template).render(**context)
    document = yaml.load(text, Loader=_LOADER)  # a safe loader; raises on a 2nd document
    if not isinstance(document, dict):
        raise ValueError(f"{template} did not render a mapping")
    cleaned: dict[str, Any] = _without_nulls(document)
    return cleaned


# ---------------------------------------------------------------------------------------------------------
# Names, labels, metadata


def deployment_name(owner: Owner, revision: str) -> str:
    return f"{owner.name}-{revision}"


def job_name(owner: Owner, revision: str) -> str:
    return f"{owner.name}-optimize-{revision}"


def track_service_name(owner: Owner, track: Track) -> str:
    return f"{owner.name}-{track}"


def instance_labels(owner: Owner) -> dict[str, str]:
    """The labels that select every Triton pod of this ModelDeployment."""
    return {
        "app.kubernetes.io/name": "triton",
        INSTANCE_LABEL: owner.name,
        MANAGED_BY_LABEL: MANAGED_BY,
    }


def revision_labels(owner: Owner, revision: str) -> dict[str, str]:
    """The labels that select the Triton pods of one revision (pod templates carry exactly these)."""
    return {**instance_labels(owner), REVISION_LABEL: revision}


def _owner_references(owner: Owner) -> list[dict[str, Any]] | None:
    if owner.uid is None:
        return None
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": owner.name,
            "uid": owner.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _metadata(owner: Owner, name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": dict(labels),
        "ownerReferences": _owner_references(owner),
    }


# ---------------------------------------------------------------------------------------------------------
# Storage: where a revision's artifacts live


def _storage_parts(spec: ModelDeploymentSpec) -> tuple[str, str, str]:
    """(scheme, claim or bucket, prefix without slashes at either end)."""
    parsed = urlsplit(spec.storage.uri)
    return parsed.scheme, parsed.netloc, parsed.path.strip("/")


def artifact_path(spec: ModelDeploymentSpec, owner: Owner, revision: str) -> str:
    """`PREFIX/NS/NAME/REV`: a revision's directory inside the storage's claim or bucket."""
    _, _, prefix = _storage_parts(spec)
    return "/".join(part for part in (prefix, owner.namespace, owner.name, revision) if part)


def artifact_uri(spec: ModelDeploymentSpec, owner: Owner, revision: str) -> str:
    """`pvc://CLAIM/PREFIX/NS/NAME/REV` or `s3://BUCKET/PREFIX/NS/NAME/REV`."""
    scheme, location, _ = _storage_parts(spec)
    return f"{scheme}://{location}/{artifact_path(spec, owner, revision)}"


def _triton_s3_repository(spec: ModelDeploymentSpec, owner: Owner, revision: str) -> str:
    _, bucket, _ = _storage_parts(spec)
    path = f"{bucket}/{artifact_path(spec, owner, revision)}"
    if spec.storage.endpoint is None:
        return f"s3://{path}"
    # Triton's form for S3-compatible stores: s3://HOST:PORT/BUCKET/PATH, s3://https://HOST:PORT/... for TLS.
    endpoint = urlsplit(spec.storage.endpoint)
    tls = "https://" if endpoint.scheme == "https" else ""
    return f"s3://{tls}{endpoint.netloc}/{path}"


# ---------------------------------------------------------------------------------------------------------
# Pod parts


def _resources(resources: ResourceRequirements) -> dict[str, Any]:
    return resources.model_dump(mode="json", by_alias=True, exclude_none=True)


def _tolerations(tolerations: list[Toleration]) -> list[dict[str, Any]] | None:
    return [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tolerations] or None


def _env_from(*secrets: str | None) -> list[dict[str, Any]] | None:
    unique = list(dict.fromkeys(secret for secret in secrets if secret is not None))
    return [{"secretRef": {"name": secret}} for secret in unique] or None


def _pvc_claim(uri: str | None) -> str | None:
    if uri is None or not uri.startswith("pvc://"):
        return None
    return urlsplit(uri).netloc


def _scratch_volumes() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes = [{"name": "tmp", "emptyDir": {}}]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    return volumes, mounts


# ---------------------------------------------------------------------------------------------------------
# The children


def render_optimization_job(owner: Owner, spec: ModelDeploymentSpec, revision: str) -> dict[str, Any]:
    """Job `NAME-optimize-REV`: optimizes the model and writes the revision's Triton repository."""
    optimization = spec.optimization
    labels = {
        "app.kubernetes.io/name": "modeldeploy-optimizer",
        INSTANCE_LABEL: owner.name,
        MANAGED_BY_LABEL: MANAGED_BY,
        "app.kubernetes.io/component": "optimizer",
        REVISION_LABEL: revision,
    }
    volumes, mounts = _scratch_volumes()
    # Each claim the Job reads or writes is mounted once at PVC_ROOT/CLAIM; writable if it holds the output.
    storage_claim = _pvc_claim(spec.storage.uri)
    read_claims = [
        _pvc_claim(spec.model.uri),
        _pvc_claim(optimization.calibration.uri if optimization.calibration else None),
    ]
    claims = dict.fromkeys(claim for claim in [storage_claim, *read_claims] if claim is not None)
    for index, claim in enumerate(claims):
        volume = f"claim-{index}"
        read_only = claim != storage_claim
        volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}})
        mounts.append({"name": volume, "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": read_only})
    env = [
        {
            "name": "MODELDEPLOY_SPEC",
            # Without in-place fields (serving.replicas): a Job's pod template is immutable, and scaling
            # during an optimization must not change the Job of the same revision.
            "value": json.dumps(revision_json(spec, "optimization", "serving"), separators=(",", ":")),
        },
        {"name": "MODELDEPLOY_PVC_ROOT", "value": PVC_ROOT},
        {"name": "HOME", "value": "/tmp"},
    ]
    if spec.storage.endpoint is not None:
        env.append({"name": "AWS_ENDPOINT_URL", "value": spec.storage.endpoint})
    args = [
        "--model",
        spec.model.uri,
        "--output",
        artifact_uri(spec, owner, revision),
        "--name",
        spec.model.name,
        "--spec",
        "env:MODELDEPLOY_SPEC",
        "--termination-message",
        "/dev/termination-log",
    ]
    return _render(
        "optimization-job.yaml.j2",
        metadata=_metadata(owner, job_name(owner, revision), labels),
        pod_labels=labels,
        node_selector=optimization.node_selector or None,
        tolerations=_tolerations(optimization.tolerations),
        image=optimization.image,
        args=args,
        env=env,
        # The storage secret comes last so its AWS_* keys win if both secrets hold them.
        env_from=_env_from(spec.model.credentials_secret, spec.storage.credentials_secret),
        resources=_resources(optimization.resources),
        volume_mounts=mounts,
        volumes=volumes,
    )


def render_revision_deployment(
    owner: Owner, spec: ModelDeploymentSpec, revision: str, track: Track, replicas: int | None
) -> dict[str, Any]:
    """Deployment `NAME-REV` running Triton on the revision's repository; `replicas=None` leaves
    `spec.replicas` out (an HPA or ScaledObject owns it)."""
    serving = spec.serving
    volumes, mounts = _scratch_volumes()
    # Triton's python backend and its stubs share tensors through /dev/shm.
    volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}})
    mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    scheme, claim, _ = _storage_parts(spec)
    if scheme == "pvc":
        repository = TRITON_REPOSITORY_MOUNT
        volumes.append(
            {"name": "model-repository", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append(
            {
                "name": "model-repository",
                "mountPath": TRITON_REPOSITORY_MOUNT,
                "subPath": artifact_path(spec, owner, revision),
                "readOnly": True,
            }
        )
    else:
        repository = _triton_s3_repository(spec, owner, revision)
    args = [
        f"--model-repository={repository}",
        f"--http-port={HTTP_PORT}",
        "--grpc-port=8001",
        "--metrics-port=8002",
        "--allow-metrics=true",
        "--metrics-config=summary_latencies=true",
        "--strict-readiness=true",
        "--exit-on-error=true",
        *serving.extra_args,
    ]
    pod_labels = revision_labels(owner, revision)
    return _render(
        "deployment.yaml.j2",
        metadata=_metadata(owner, deployment_name(owner, revision), {**pod_labels, TRACK_LABEL: track}),
        replicas=replicas,
        selector=pod_labels,
        pod_labels=pod_labels,
        node_selector=serving.node_selector or None,
        tolerations=_tolerations(serving.tolerations),
        image=serving.image,
        args=args,
        env=None,
        env_from=_env_from(spec.storage.credentials_secret),
        # Warm-up (model_warmup in config.pbtxt) runs before the model is READY: allow it 20 minutes.
        startup_failure_threshold=120 if serving.warmup else 60,
        resources=_resources(serving.resources),
        volume_mounts=mounts,
        volumes=volumes,
    )


def render_services(
    owner: Owner, spec: ModelDeploymentSpec, stable_revision: str, canary_revision: str | None
) -> list[dict[str, Any]]:
    """Service `NAME` (every revision: traffic splits by replica count), and with Gateway API routing
    `NAME-stable` and `NAME-canary` (the canary Service selects the stable revision while there is no
    canary, so the route never points at an empty Service)."""
    services = [
        _render(
            "service.yaml.j2",
            metadata=_metadata(owner, owner.name, instance_labels(owner)),
            selector=instance_labels(owner),
        )
    ]
    if spec.rollout.traffic_routing.type == "gatewayAPI":
        tracks: list[tuple[Track, str]] = [
            ("stable", stable_revision),
            ("canary", canary_revision or stable_revision),
        ]
        for track, revision in tracks:
            selector = revision_labels(owner, revision)
            services.append(
                _render(
                    "service.yaml.j2",
                    metadata=_metadata(
                        owner,
                        track_service_name(owner, track),
                        {**instance_labels(owner), TRACK_LABEL: track},
                    ),
                    selector=selector,
                )
            )
    return services


def render_autoscaler(owner: Owner, spec: ModelDeploymentSpec, stable_revision: str) -> dict[str, Any] | None:
    """HPA (autoscaling/v2) or KEDA ScaledObject `NAME` for the stable Deployment; None when engine=none."""
    autoscaling = spec.autoscaling
    if autoscaling.engine == "none":
        return None
    assert autoscaling.target is not None  # parse_spec requires it when an engine is set
    metric = scaling_metric(autoscaling.metric, owner.namespace, owner.name, stable_revision, spec.model.name)
    common = {
        "metadata": _metadata(owner, owner.name, instance_labels(owner)),
        "target_deployment": deployment_name(owner, stable_revision),
        "min_replicas": autoscaling.min_replicas,
        "max_replicas": autoscaling.max_replicas,
    }
    if autoscaling.engine == "hpa":
        return _render(
            "hpa.yaml.j2",
            metric_name=metric.hpa_metric_name,
            target_value=format_quantity(autoscaling.target),
            **common,
        )
    return _render(
        "scaledobject.yaml.j2",
        metric_type=metric.keda_metric_type,
        prometheus_url=spec.monitoring.prometheus_url,
        query=metric.keda_query,
        threshold=f"{autoscaling.target:g}",
        **common,
    )


def render_pod_monitor(owner: Owner, spec: ModelDeploymentSpec) -> dict[str, Any] | None:
    """PodMonitor `NAME` scraping every Triton pod; None when monitoring.podMonitor is false."""
    if not spec.monitoring.pod_monitor:
        return None
    return _render(
        "podmonitor.yaml.j2",
        # The extra labels are what a Prometheus' podMonitorSelector matches (kube-prometheus-stack: release).
        metadata=_metadata(
            owner, owner.name, {**spec.monitoring.pod_monitor_labels, **instance_labels(owner)}
        ),
        selector=instance_labels(owner),
        namespaces=[owner.namespace],
    )


def render_http_route(owner: Owner, spec: ModelDeploymentSpec, canary_weight: int) -> dict[str, Any] | None:
    """HTTPRoute `NAME` sending `canary_weight`% to `NAME-canary`; None unless routing is gatewayAPI."""
    gateway = spec.rollout.traffic_routing.gateway_api
    if spec.rollout.traffic_routing.type != "gatewayAPI" or gateway is None:
        return None
    if not 0 <= canary_weight <= 100:
        raise ValueError(f"canary_weight must be in 0..100, got {canary_weight}")
    parent = gateway.parent_ref
    parent_ref = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": parent.name,
        "namespace": parent.namespace,
        "sectionName": parent.section_name,
    }
    return _render(
        "httproute.yaml.j2",
        metadata=_metadata(owner, owner.name, instance_labels(owner)),
        parent_refs=[parent_ref],
        hostnames=gateway.hostnames or None,
        stable_service=track_service_name(owner, "stable"),
        canary_service=track_service_name(owner, "canary"),
        stable_weight=100 - canary_weight,
        canary_weight=canary_weight,
    )


def _preview_canary_replicas(spec: ModelDeploymentSpec, weight: int) -> int:
    # Replica routing approximates the weight by the canary's share of pods (at least one pod).
    total = spec.serving.replicas if spec.autoscaling.engine == "none" else spec.autoscaling.min_replicas
    return max(1, math.ceil(total * weight / 100))


def render_all(owner: Owner, spec: ModelDeploymentSpec, plan: RenderPlan) -> list[dict[str, Any]]:
    """Every child for `plan`, in apply order (the CLI preview)."""
    objects: list[dict[str, Any] | None] = []
    if plan.optimize_revision is not None:
        objects.append(render_optimization_job(owner, spec, plan.optimize_revision))
    stable_replicas = spec.serving.replicas if spec.autoscaling.engine == "none" else None
    objects.append(render_revision_deployment(owner, spec, plan.stable_revision, "stable", stable_replicas))
    if plan.canary_revision is not None:
        canary_replicas = _preview_canary_replicas(spec, plan.canary_weight)
        objects.append(
            render_revision_deployment(owner, spec, plan.canary_revision, "canary", canary_replicas)
        )
    objects.extend(render_services(owner, spec, plan.stable_revision, plan.canary_revision))
    objects.append(render_autoscaler(owner, spec, plan.stable_revision))
    objects.append(render_pod_monitor(owner, spec))
    objects.append(render_http_route(owner, spec, plan.canary_weight if plan.canary_revision else 0))
    return [obj for obj in objects if obj is not None]
