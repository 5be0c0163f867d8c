"""The chart's RBAC and ServiceAccount, rendered by the real helm and applied to the real control plane, and
a kubeconfig that authenticates as that ServiceAccount (a TokenRequest token: not admin, so the real RBAC
authorizer judges every request the operator sends).

Each watch scope has its own ServiceAccount name, so the operator's requests are easy to pick out of the
API server's audit log: `identity_events(cluster, identity.username)` for one test's identity,
`scope_events(cluster, scope)` for every run of a scope in the session."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import toolbin
import yaml
from cluster import Cluster

CHART = toolbin.REPO_ROOT / "helm" / "modeldeploy"
# One ServiceAccount name per scope: the audit events of either are selected by its user name.
SERVICE_ACCOUNTS = {"cluster": "modeldeploy-cluster-scope", "namespaces": "modeldeploy-namespaced-scope"}
DECISION = "authorization.k8s.io/decision"

Scope = Literal["cluster", "namespaces"]
Edit = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@dataclass(frozen=True)
class ChartIdentity:
    release: str
    namespace: str  # the release namespace, where the ServiceAccount lives
    service_account: str
    kubeconfig: Path
    objects: list[dict[str, Any]]  # what was applied

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def render_rbac(release: str, namespace: str, scope: Scope, watched: list[str]) -> list[dict[str, Any]]:
    """The chart's ServiceAccount and RBAC objects for `scope`, as `helm template` renders them."""
    command = [str(toolbin.helm_path()), "template", release, str(CHART), "--namespace", namespace]
    command += ["--set", f"watch.scope={scope}", "--set", f"serviceAccount.name={SERVICE_ACCOUNTS[scope]}"]
    if scope == "namespaces":
        command += ["--set-json", f"watch.namespaces={json.dumps(watched)}"]
    command += ["--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml"]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def install_identity(
    cluster: Cluster,
    workdir: Path,
    *,
    release: str,
    namespace: str,
    scope: Scope,
    watched: list[str],
    edit: Edit | None = None,
) -> ChartIdentity:
    """Apply the chart's RBAC (changed by `edit`, when given) and return a token kubeconfig for its
    ServiceAccount."""
    objects = render_rbac(release, namespace, scope, watched)
    if edit is not None:
        objects = edit(objects)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
    account = SERVICE_ACCOUNTS[scope]
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    issued = cluster.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token", request
    )
    kubeconfig = write_token_kubeconfig(workdir / f"{account}.kubeconfig", cluster, account, issued)
    return ChartIdentity(release, namespace, account, kubeconfig, objects)


def write_token_kubeconfig(path: Path, cluster: Cluster, user: str, token_request: dict[str, Any]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "modeldeploy",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority": str(cluster.plane.credentials.ca),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token_request["status"]["token"]}}],
        "contexts": [{"name": "modeldeploy", "context": {"cluster": "modeldeploy", "user": user}}],
        "current-context": "modeldeploy",
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def uninstall_cluster_objects(cluster: Cluster, identity: ChartIdentity) -> None:
    """Delete the cluster-scoped objects (ClusterRole, ClusterRoleBinding); namespaced ones go with their
    namespace."""
    for obj in identity.objects:
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            cluster.kubectl("delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found")


def identity_events(cluster: Cluster, username: str) -> list[dict[str, Any]]:
    """The audit events (stage ResponseComplete) of the requests `username` sent."""
    return [e for e in cluster.audit_events() if e.get("user", {}).get("username") == username]


def scope_events(cluster: Cluster, scope: Scope) -> list[dict[str, Any]]:
    """The audit events of the operator running as `scope`'s ServiceAccount, in every namespace of the
    cluster (each test installs the chart's identity into its own namespace)."""
    suffix = f":{SERVICE_ACCOUNTS[scope]}"
    return [
        e
        for e in cluster.audit_events()
        if (name := e.get("user", {}).get("username", "")).startswith("system:serviceaccount:")
        and name.endswith(suffix)
    ]


def request_key(event: dict[str, Any]) -> str:
    """`verb resource[/subresource]` of an audited request (its URI when it names no resource)."""
    ref = event.get("objectRef") or {}
    resource = "/".join(part for part in (ref.get("resource"), ref.get("subresource")) if part)
    return f"{event['verb']} {resource or event.get('requestURI', '')}"


def denied(events: list[dict[str, Any]]) -> list[str]:
    """`verb resource[/subresource]` of each request the RBAC authorizer refused."""
    return sorted(
        {request_key(event) for event in events if (event.get("annotations") or {}).get(DECISION) == "forbid"}
    )


def without_rule(resource: str) -> Edit:
    """An edit that drops every rule naming `resource` from the Roles and ClusterRoles."""

    def edit(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for obj in objects:
            if obj["kind"] in ("Role", "ClusterRole"):
                obj["rules"] = [rule for rule in obj["rules"] if resource not in rule["resources"]]
        return objects

    return edit
