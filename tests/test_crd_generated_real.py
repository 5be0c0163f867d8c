"""The generated CRD ⇄ spec cases (tests/crd_cases.py) judged by the real kube-apiserver: every bound,
length, item count, enum and wrong type of every field, and objects drawn by hypothesis-jsonschema, each
sent as a server-side dry run (`dryRun=All`, `fieldValidation=Strict`, as kubectl sends it) and judged by
`parse_spec`. Zero disagreements: both admit, or both refuse naming the same field.

The fast layer (tests/cel_rules.py) is what tests/test_crd_generated.py runs on every change; this is the
ground truth it stands in for, so a cel-python or jsonschema difference from Kubernetes shows up here.
"""

from __future__ import annotations

import json
import re
from typing import Any

import crd_cases
from cluster import Cluster
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_crd_generated import generated_spec

from modeldeploy.cluster.rest import ApiError

GROUP_PATH = "/apis/modeldeploy.io/v1alpha1"


def server_verdict(cluster: Cluster, namespace: str, spec: dict[str, Any]) -> str | None:
    """The API server's refusal message for a ModelDeployment with `spec`, or None when it would store it."""
    body = json.loads(json.dumps(crd_cases.document(spec, name="generated")))
    body["metadata"]["namespace"] = namespace
    try:
        cluster.request(
            "POST",
            f"{GROUP_PATH}/namespaces/{namespace}/modeldeployments",
            body,
            params={"dryRun": "All", "fieldValidation": "Strict"},
        )
    except ApiError as error:
        assert error.status in (400, 422), error
        message: str = json.loads(error.body)["message"]
        return message
    return None


def server_syntax(path: str) -> str:
    """The server writes a map key as `.key` where the operator writes `[key]`."""
    return re.sub(r"\[([^\]0-9][^\]]*)\]", r".\1", path)


def disagreement(field: str | None, message: str | None, operator: set[str]) -> str | None:
    if message is None and not operator:
        return None
    if message is None or not operator:
        return f"server: {message or 'admitted'}; spec refuses {sorted(operator) or 'nothing'}"
    named = [path for path in operator if server_syntax(path) in message]
    if field is not None and server_syntax(field) not in message and not named:
        return f"server does not name {field}: {message}; spec refuses {sorted(operator)}"
    if not named:
        return f"no field in common: server {message}; spec refuses {sorted(operator)}"
    return None


def test_the_real_server_and_the_spec_agree_on_every_generated_bound(
    control_plane: Cluster, cluster_namespace: str
) -> None:
    problems = []
    for case in crd_cases.boundary_cases():
        message = server_verdict(control_plane, cluster_namespace, case.spec)
        problem = disagreement(case.field, message, crd_cases.judge_spec(case.spec))
        if problem is not None:
            problems.append(f"{case.id}: {problem}")
    assert problems == [], "\n".join(problems[:20])


DRAWN = 150


def test_the_real_server_and_the_spec_agree_on_drawn_objects(
    control_plane: Cluster, cluster_namespace: str
) -> None:
    batches: list[list[tuple[str, dict[str, Any]]]] = []

    @settings(
        max_examples=1,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(generated_spec(), min_size=DRAWN, max_size=DRAWN))
    def draw(batch: list[tuple[str, dict[str, Any]]]) -> None:
        batches.append(batch)

    draw()
    problems = []
    for section, spec in batches[-1]:
        message = server_verdict(control_plane, cluster_namespace, spec)
        problem = disagreement(None, message, crd_cases.judge_spec(spec))
        if problem is not None:
            problems.append(f"{section} {json.dumps(spec[section])[:300]}: {problem}")
    assert problems == [], "\n".join(problems[:20])
