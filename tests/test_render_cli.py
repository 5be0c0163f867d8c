"""`modeldeploy render` as a user runs it: manifests on stdout, or exit 2 with one line per problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cel_rules
import pytest
import yaml

from modeldeploy.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cnn-int8-hpa.yaml"


def render(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["render", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "input.yaml"
    path.write_text(text)
    return str(path)


VALID = """
apiVersion: modeldeploy.io/v1alpha1
kind: ModelDeployment
metadata: {name: NAME, namespace: team-a}
spec:
  model: {name: classifier, uri: "s3://models/classifier.onnx"}
  storage: {uri: "pvc://store"}
"""


def test_prints_every_child_as_yaml_documents(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = render(capsys, "-f", str(EXAMPLE))
    assert (code, err) == (0, "")
    objects = list(yaml.safe_load_all(out))
    assert [o["kind"] for o in objects] == [
        "Job",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodMonitor",
    ]
    for manifest in objects:
        if manifest["kind"] in cel_rules.BUILTIN_KINDS:
            cel_rules.validate_builtin(manifest)
        assert "ownerReferences" not in manifest["metadata"]  # a preview has no owner yet


def test_json_output_is_one_list_with_the_same_objects(capsys: pytest.CaptureFixture[str]) -> None:
    _, as_yaml, _ = render(capsys, "-f", str(EXAMPLE))
    code, as_json, _ = render(capsys, "-f", str(EXAMPLE), "-o", "json")
    assert code == 0
    listed = json.loads(as_json)
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
    assert listed["items"] == list(yaml.safe_load_all(as_yaml))


def test_revision_flag_names_the_rendered_revision(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = render(capsys, "-f", str(EXAMPLE), "--revision", "abc123")
    assert code == 0
    names = [o["metadata"]["name"] for o in yaml.safe_load_all(out)]
    assert names[:2] == ["resnet50-optimize-abc123", "resnet50-abc123"]


def test_multi_document_input_renders_each_model_deployment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "---\n" + VALID.replace("NAME", "first") + "---\n---\n" + VALID.replace("NAME", "second")
    code, out, _ = render(capsys, "-f", write(tmp_path, text))
    assert code == 0
    instances = {o["metadata"]["labels"]["app.kubernetes.io/instance"] for o in yaml.safe_load_all(out)}
    assert instances == {"first", "second"}


def test_reads_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io  # noqa: PLC0415

    monkeypatch.setattr(sys, "stdin", io.StringIO(VALID.replace("NAME", "piped")))
    code, out, _ = render(capsys, "-f", "-")
    assert code == 0
    assert "piped-optimize-" in out


def test_every_problem_of_every_document_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        VALID.replace("NAME", "good")
        + "---\n"
        + VALID.replace("NAME", "bad").replace("pvc://store", "ftp://store")
        + "  rollout: {steps: [50, 20], interval: 5s}\n"
        + "---\n"
        + VALID.replace("NAME", "Bad_Name")
    )
    path = write(tmp_path, text)
    code, out, err = render(capsys, "-f", path)
    assert code == 2
    assert out == ""
    assert err.splitlines() == [
        f"{path}: bad: spec.storage.uri: must be pvc://CLAIM[/PREFIX] or s3://BUCKET[/PREFIX]",
        f"{path}: bad: spec.rollout.steps: must be strictly increasing",
        f"{path}: bad: spec.rollout.interval: must be at least 10s",
        f"{path}: Bad_Name: metadata.name: must be a DNS-1035 label "
        "(lowercase letters, digits, '-'; starts with a letter)",
    ]


def test_cross_field_problems_are_reported_with_their_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = VALID.replace("NAME", "demo") + "  rollout: {steps: [50, 20], interval: 5s}\n"
    path = write(tmp_path, text)
    code, _, err = render(capsys, "-f", path)
    assert code == 2
    assert err.splitlines() == [
        f"{path}: demo: spec.rollout.steps: must be strictly increasing",
        f"{path}: demo: spec.rollout.interval: must be at least 10s",
    ]


MANY_PROBLEMS = """
apiVersion: modeldeploy.io/v1alpha1
kind: ModelDeployment
metadata: {name: demo}
spec:
  model: {name: classifier, uri: "ftp://models/classifier.onnx"}
  serving: {replicas: many, maxBatchSize: 0, dynamicBatching: {}}
  autoscaling: {engine: hpa, minReplicas: 5, maxReplicas: 2}
  rollout: {steps: [50, 20], interval: 5s, progressDeadline: 5s}
"""


def test_field_and_cross_field_problems_are_all_listed_in_one_run(tmp_path: Path) -> None:
    """A user fixing a file sees every problem at once: a bad field no longer hides the rules broken in the
    sections that are otherwise valid (only rules of an invalid section, here serving's, wait)."""
    path = write(tmp_path, MANY_PROBLEMS)
    script = Path(sys.executable).with_name("modeldeploy")
    result = subprocess.run(
        [str(script), "render", "-f", path], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}: demo: spec.model.uri: must be a URI with scheme s3://, gs://, https://, file:// or "
        "pvc://CLAIM/PATH",
        f"{path}: demo: spec.serving.replicas: Input should be a valid integer",
        f"{path}: demo: spec.storage: required",
        f"{path}: demo: spec.autoscaling.minReplicas: must be at most maxReplicas",
        f"{path}: demo: spec.autoscaling.target: required when engine is hpa or keda",
        f"{path}: demo: spec.rollout.steps: must be strictly increasing",
        f"{path}: demo: spec.rollout.interval: must be at least 10s",
        f"{path}: demo: spec.rollout.progressDeadline: must be longer than interval",
    ]


HEADER = "apiVersion: modeldeploy.io/v1alpha1\nkind: ModelDeployment\n"
WITHOUT_MODEL = VALID.replace('  model: {name: classifier, uri: "s3://models/classifier.onnx"}\n', "")
BAD_CASES = [
    ("kind: [unclosed", "YAML syntax error at line 1, column"),
    ("a: b\n c: d\n", "YAML syntax error at line 2"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "x: kind: expected modeldeploy.io/v1alpha1 "),
    ("- just\n- a list\n", "document 1: must be a mapping"),
    ("", "no ModelDeployment found"),
    (WITHOUT_MODEL.replace("NAME", "demo"), "demo: spec.model: required"),
    (
        VALID.replace("NAME", "demo").replace("team-a", "Team A"),
        "demo: metadata.namespace: must be a DNS-1123",
    ),
    (VALID.replace("NAME", '"demo\\n---\\nkind: Secret"'), "metadata.name: must be"),
    (HEADER + "metadata: {name: nospec}\n", "nospec: spec: required"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CASES)
def test_bad_input_exits_2_with_a_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    code, out, err = render(capsys, "-f", write(tmp_path, text))
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.splitlines()) == 1


def test_missing_file_and_bad_revision_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = render(capsys, "-f", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert err.strip() == f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory"
    code, _, err = render(capsys, "-f", str(EXAMPLE), "--revision", "../x")
    assert code == 2
    assert err.startswith("--revision:")


def test_console_script_never_shows_a_traceback(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("modeldeploy")
    bad = write(tmp_path, VALID.replace("NAME", "demo").replace("s3://models", "s3://my models"))
    result = subprocess.run(
        [str(script), "render", "-f", bad], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        result.stderr
        == f"{bad}: demo: spec.model.uri: must be a URI with scheme s3://, gs://, https://, file:// or pvc://CLAIM/PATH\n"
    )
    good = subprocess.run(
        [str(script), "render", "-f", str(EXAMPLE)], capture_output=True, text=True, check=False, timeout=60
    )
    assert good.returncode == 0, good.stderr
    assert len(list(yaml.safe_load_all(good.stdout))) == 5
