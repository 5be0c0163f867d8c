"""Chart values → `modeldeploy run` flags → what every ModelDeployment gets, with the real helm binary.

A new user's install is `helm install` plus a few `--set` flags: the image registry, CPU mode, the
Prometheus to use and the label its PodMonitor selector wants. Each is followed here from the chart's
rendered operator args through the real argument parser (`spec_defaults`) into the objects the operator
renders, and a kube-prometheus-stack style Prometheus selector is evaluated against the PodMonitor.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import toolbin
import yaml

from modeldeploy import __version__
from modeldeploy.cli import build_parser
from modeldeploy.commands.run import DefaultsError, spec_defaults
from modeldeploy.defaults import PrometheusAuthRef, SpecDefaults
from modeldeploy.rendering import (
    Owner,
    render_optimization_job,
    render_pod_monitor,
    render_revision_deployment,
)
from modeldeploy.spec import parse_spec

CHART = Path(__file__).resolve().parent.parent / "helm" / "modeldeploy"
NAMESPACE = "modeldeploy-system"
SPEC = {"model": {"name": "cnn", "uri": "s3://models/cnn.onnx"}, "storage": {"uri": "pvc://store/repos"}}


def rendered(*sets: str) -> list[dict[str, Any]]:
    args = [item for value in sets for item in ("--set", value)]
    result = subprocess.run(
        [str(toolbin.helm_path()), "template", "md", str(CHART), "--namespace", NAMESPACE, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def operator_defaults(*sets: str) -> tuple[SpecDefaults, dict[str, Any]]:
    (deployment,) = (obj for obj in rendered(*sets) if obj["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return spec_defaults(build_parser().parse_args(container["args"])), container


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels + matchExpressions In/NotIn/Exists/DoesNotExist)."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if not {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]:
            return False
    return True


def test_defaults_without_values_are_the_builtin_ones() -> None:
    defaults, container = operator_defaults()
    assert defaults == SpecDefaults()
    assert container["image"] == f"ghcr.io/modeldeploy/operator:{__version__}"


def test_registry_and_cpu_mode_are_two_set_flags() -> None:
    defaults, container = operator_defaults("imageRegistry=registry.example.com/mirror", "accelerator=cpu")
    assert container["image"] == f"registry.example.com/mirror/operator:{__version__}"
    spec = parse_spec(SPEC, defaults)
    job = render_optimization_job(Owner("cnn", "ml"), spec, "a1b2c3d4e5")
    job_pod = job["spec"]["template"]["spec"]
    assert job_pod["containers"][0]["image"] == f"registry.example.com/mirror/optimizer:{__version__}"
    serving = render_revision_deployment(Owner("cnn", "ml"), spec, "a1b2c3d4e5", "stable", 1)
    serving_pod = serving["spec"]["template"]["spec"]
    for pod in (job_pod, serving_pod):
        for container_spec in pod["containers"]:
            resources = container_spec.get("resources") or {}
            assert "nvidia.com/gpu" not in {**resources.get("requests", {}), **resources.get("limits", {})}
        assert not pod.get("tolerations")
    assert spec.serving.instance_group.kind == "cpu"
    # compile target tensorrt gets the TensorRT variant of the optimizer image, never the CPU one.
    tensorrt = parse_spec(
        {**SPEC, "accelerator": "gpu", "optimization": {"compile": {"target": "tensorrt"}}}, defaults
    )
    assert tensorrt.optimization.image == f"registry.example.com/mirror/optimizer:{__version__}-tensorrt"


def test_kube_prometheus_stack_selector_finds_the_pod_monitor() -> None:
    # kube-prometheus-stack's Prometheus: podMonitorSelector {matchLabels: {release: RELEASE}}.
    selector = {"matchLabels": {"release": "kube-prometheus-stack"}}
    unlabelled, _ = operator_defaults()
    plain = render_pod_monitor(Owner("cnn", "ml"), parse_spec(SPEC, unlabelled))
    assert plain is not None
    assert not matches(selector, plain["metadata"]["labels"])
    defaults, _ = operator_defaults("monitoring.podMonitorLabels.release=kube-prometheus-stack")
    monitor = render_pod_monitor(Owner("cnn", "ml"), parse_spec(SPEC, defaults))
    assert monitor is not None
    assert matches(selector, monitor["metadata"]["labels"])
    # A ModelDeployment's own labels win over the chart's, and the operator's own labels cannot be replaced.
    own = {
        **SPEC,
        "monitoring": {"podMonitorLabels": {"release": "team-prometheus", "app.kubernetes.io/instance": "x"}},
    }
    labels = render_pod_monitor(Owner("cnn", "ml"), parse_spec(own, defaults))["metadata"]["labels"]  # type: ignore[index]
    assert labels["release"] == "team-prometheus"
    assert labels["app.kubernetes.io/instance"] == "cnn"


def test_prometheus_url_and_auth_secret_are_chart_wide_and_go_only_to_that_url() -> None:
    url = "https://kps-prometheus.monitoring.svc:9090"
    defaults, _ = operator_defaults(
        f"monitoring.prometheusUrl={url}",
        "monitoring.prometheusAuth.secretName=prometheus-reader",
        "monitoring.prometheusAuth.type=basicAuth",
    )
    assert defaults.prometheus_url == url
    assert defaults.prometheus_auth == PrometheusAuthRef(NAMESPACE, "prometheus-reader", "basicAuth")
    from modeldeploy.defaults import prometheus_auth_for  # noqa: PLC0415

    assert prometheus_auth_for(parse_spec(SPEC, defaults).monitoring.prometheus_url, None, defaults) == (
        defaults.prometheus_auth
    )
    elsewhere = parse_spec({**SPEC, "monitoring": {"prometheusUrl": "https://attacker.example"}}, defaults)
    assert prometheus_auth_for(elsewhere.monitoring.prometheus_url, None, defaults) is None
    # The chart lets the operator read that one Secret in its namespace, nothing else.
    roles = [
        obj
        for obj in rendered("monitoring.prometheusAuth.secretName=prometheus-reader")
        if obj["kind"] == "Role"
    ]
    (role,) = roles
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["prometheus-reader"],
            "verbs": ["get"],
        }
    ]


def test_per_object_prometheus_secrets_are_an_explicit_opt_in() -> None:
    def secret_rules(*sets: str) -> list[dict[str, Any]]:
        (role,) = (obj for obj in rendered(*sets) if obj["kind"] == "ClusterRole")
        return [rule for rule in role["rules"] if "secrets" in rule["resources"]]

    assert secret_rules() == []
    assert secret_rules("rbac.prometheusAuthSecrets=true") == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--prometheus-url=http://admin:pw@prom:9090"], "--prometheus-url: must not contain credentials"),
        (["--pod-monitor-label=release"], "--pod-monitor-label: must be KEY=VALUE"),
        (["--pod-monitor-label=release=a b"], "--pod-monitor-label: must be a label value"),
        (["--optimizer-image=bad image"], "--optimizer-image: must be an image reference"),
        (["--prometheus-auth-secret=no-namespace"], "--prometheus-auth-secret: must be NAMESPACE/NAME"),
    ],
)
def test_bad_default_flags_are_refused_naming_the_flag(flags: list[str], message: str) -> None:
    with pytest.raises(DefaultsError, match=message):
        spec_defaults(build_parser().parse_args(["run", *flags]))


def test_render_previews_a_cluster_with_the_same_default_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from modeldeploy.cli import main  # noqa: PLC0415

    manifest = tmp_path / "m.yaml"
    body = {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "cnn"}}
    manifest.write_text(yaml.safe_dump({**body, "spec": SPEC}))
    assert (
        main(["render", "-f", str(manifest), "--accelerator", "cpu", "--optimizer-image", "r.local/o:1"]) == 0
    )
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    (job,) = (obj for obj in objects if obj["kind"] == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "r.local/o:1"
    assert "nvidia.com/gpu" not in json.dumps(objects)
    assert main(["render", "-f", str(manifest), "--pod-monitor-label", "bad"]) == 2
    assert "--pod-monitor-label: must be KEY=VALUE" in capsys.readouterr().err
