"""What the chart's RBAC must never grant, in every scope and every values file of the chart's ci/ folder.

tests/test_helm_rbac.py proves the operator's requests are allowed; this proves the other half that no test
covered: no right that would let the operator's identity (or anyone who steals its token) run code in pods,
mint tokens, read or change Secrets, touch nodes, or change RBAC. Rendered by the real helm binary.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import toolbin
import yaml

CHART = Path(__file__).resolve().parent.parent / "helm" / "modeldeploy"
SCOPES: dict[str, tuple[str, ...]] = {
    "cluster": (),
    "cluster without peering": ("--set", "peering.enabled=false"),
    "namespaces": ("--set", "watch.scope=namespaces", "--set", "watch.namespaces={ml-a,ml-b}"),
    **{f"ci/{path.name}": ("--values", str(path)) for path in sorted((CHART / "ci").glob("*.yaml"))},
}
# (API group, resource, verb): code execution in pods, tokens, secrets, nodes, RBAC, impersonation.
DENIED: set[tuple[str, str, str]] = {
    *{
        ("", f"pods/{sub}", verb)
        for sub in ("exec", "attach", "portforward", "proxy")
        for verb in ("get", "create")
    },
    ("", "pods", "create"),
    ("", "pods", "delete"),
    ("", "pods/eviction", "create"),
    ("", "serviceaccounts/token", "create"),
    ("", "serviceaccounts", "create"),
    *{("", "secrets", verb) for verb in ("get", "list", "watch", "create", "update", "patch", "delete")},
    *{("", "nodes", verb) for verb in ("get", "list", "watch", "update", "patch", "delete")},
    ("", "nodes/proxy", "get"),
    ("", "configmaps", "create"),
    ("", "persistentvolumeclaims", "create"),
    ("", "namespaces", "create"),
    ("", "namespaces", "delete"),
    *{
        ("rbac.authorization.k8s.io", resource, verb)
        for resource in ("roles", "rolebindings", "clusterroles", "clusterrolebindings")
        for verb in ("create", "update", "patch", "delete", "escalate", "bind")
    },
    ("", "users", "impersonate"),
    ("", "serviceaccounts", "impersonate"),
    ("", "groups", "impersonate"),
    ("authentication.k8s.io", "tokenreviews", "create"),
    ("certificates.k8s.io", "certificatesigningrequests", "create"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "create"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "create"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "patch"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "delete"),
    ("modeldeploy.io", "modeldeployments", "delete"),
    ("modeldeploy.io", "modeldeployments", "create"),
}  # fmt: skip


def rendered_rules(*args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(toolbin.helm_path()), "template", "md", str(CHART), "--namespace", "modeldeploy-system", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    roles = [o for o in yaml.safe_load_all(result.stdout) if o and o["kind"] in ("Role", "ClusterRole")]
    return [rule for role in roles for rule in role.get("rules", [])]


def granted(rules: list[dict[str, Any]]) -> Iterator[tuple[str, str, str]]:
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    yield group, resource, verb


def allows(rules: list[dict[str, Any]], right: tuple[str, str, str]) -> bool:
    """As the RBAC authorizer matches: `*` stands for any group, resource or verb."""
    group, resource, verb = right
    return any(
        (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", []))
        and (resource in rule.get("resources", []) or "*" in rule.get("resources", []))
        and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", []))
        for rule in rules
    )


@pytest.mark.parametrize("args", SCOPES.values(), ids=list(SCOPES))
def test_the_chart_grants_no_dangerous_right(args: tuple[str, ...]) -> None:
    rules = rendered_rules(*args)  # none with rbac.create=false (bring your own)
    unrestricted = [rule for rule in rules if "resourceNames" not in rule]
    assert sorted(right for right in DENIED if allows(unrestricted, right)) == []
    # A rule limited to named objects: only the chart-wide Prometheus credentials, read, never listed.
    named = [rule for rule in rules if "resourceNames" in rule]
    expected_names = [value for flag, value in itertools.pairwise(args) if flag == "--values"]
    for rule in named:
        assert (rule["apiGroups"], rule["resources"], rule["verbs"]) == ([""], ["secrets"], ["get"]), rule
        assert expected_names and rule["resourceNames"] == [_chart_wide_secret(expected_names[0])], rule
    assert [rule for rule in rules if "resourceNames" not in rule and rule.get("nonResourceURLs")] == []
    wildcards = [right for right in granted(rules) if "*" in right]
    assert wildcards == []


def _chart_wide_secret(values_file: str) -> str | None:
    values = yaml.safe_load(Path(values_file).read_text()) or {}
    name = ((values.get("monitoring") or {}).get("prometheusAuth") or {}).get("secretName")
    return str(name) if name else None


def test_the_check_sees_a_dangerous_rule() -> None:
    """The matcher above is the RBAC authorizer's: a wildcard or a named right is found."""
    assert len(rendered_rules()) > 10
    assert allows(
        [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}], ("", "pods/exec", "create")
    )
    assert allows([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}], ("", "secrets", "get"))
    assert not allows(
        [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}], ("", "pods/exec", "create")
    )
