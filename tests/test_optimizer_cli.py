"""`modeldeploy optimize` as the Job runs it: flags, --spec env:NAME, the termination message, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx_graphs
import pytest
from optimizer_checks import (  # triton_proof: this module's repositories must load in Triton
    assert_config_matches_model,
    produced,
    read_report,
    triton_proof,  # noqa: F401
)

from modeldeploy.cli import main

QUICK_FLAGS = ["--measure-seconds", "0.2", "--calibration-samples", "4", "--gate-samples", "2"]


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return onnx_graphs.conv_net(tmp_path_factory.mktemp("cli") / "cnn.onnx")


def test_the_job_command_line_writes_repository_report_and_termination_message(
    cnn: Path, tmp_path: Path
) -> None:
    spec = {
        "optimization": {"quantization": "int8-static", "maxAccuracyDrop": 0.02, "image": "x"},
        "serving": {"maxBatchSize": 4, "instanceGroup": {"kind": "KIND_CPU", "count": 2}, "warmup": True},
    }
    message_file = tmp_path / "termination-log"
    command = [
        str(Path(sys.executable).parent / "modeldeploy"), "optimize", "--model", str(cnn),
        "--output", str(tmp_path / "repo"), "--name", "classifier", "--spec", "env:MODELDEPLOY_SPEC",
        "--termination-message", str(message_file), *QUICK_FLAGS,
    ]  # fmt: skip
    done = subprocess.run(
        command,
        env={**os.environ, "MODELDEPLOY_SPEC": json.dumps(spec)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    message = json.loads(message_file.read_text())
    assert len(message_file.read_bytes()) < 4096
    assert message["v"] == 1 and message["cached"] is False
    assert message["chosen"] == "int8-static"
    assert set(message["before"]) == set(message["after"]) == {"sizeBytes", "latencyMs", "throughput"}
    assert message["after"]["sizeBytes"] < message["before"]["sizeBytes"]
    assert message["accuracy"]["maxAccuracyDrop"] == 0.02
    assert message["report"] == str(tmp_path / "repo" / "report.json")
    config = assert_config_matches_model(tmp_path / "repo", "classifier")
    assert config.max_batch_size == 4
    assert config.instance_group[0].count == 2
    assert config.model_warmup
    assert not config.HasField("dynamic_batching")  # the spec leaves serving.dynamicBatching unset
    assert read_report(produced(tmp_path / "repo"))["chosen"] == "int8-static"

    again = subprocess.run(
        command,
        env={**os.environ, "MODELDEPLOY_SPEC": json.dumps(spec)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    cached = json.loads(message_file.read_text())
    assert cached["cached"] is True
    assert cached["after"] == message["after"]


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(["optimize", *args])
    except SystemExit as exit_:  # argparse refuses unknown values itself
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err


def test_a_missing_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["--model", str(tmp_path / "nope.onnx"), "--output", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "nope.onnx: no such file" in err


def test_a_file_that_is_not_onnx_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "model.onnx"
    text.write_text("this is a README, not a model\n")
    message = tmp_path / "termination-log"
    args = ["--model", str(text), "--output", str(tmp_path / "o"), "--termination-message", str(message)]
    code, err = _run(args, capsys)
    assert code == 2
    assert "not" in err and "ONNX" in err
    assert json.loads(message.read_text())["error"].startswith(str(text))
    assert not (tmp_path / "o").exists()


def test_a_truncated_model_exits_2(cnn: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(cnn.read_bytes()[: cnn.stat().st_size // 2])
    code, err = _run(["--model", str(truncated), "--output", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "cut.onnx" in err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--quantization", "int4"], "invalid choice: 'int4'"),
        (["--pruning-sparsity", "0.95"], "--pruning-sparsity"),
        (["--max-accuracy-drop", "1"], "--max-accuracy-drop"),
        (["--max-batch-size", "2", "--batch-size", "4"], "--batch-size"),
        (["--input-shape", "image"], "--input-shape"),
        (["--name", "../escape"], "--name"),
        (["--spec", "env:MODELDEPLOY_TEST_UNSET_VARIABLE"], "MODELDEPLOY_TEST_UNSET_VARIABLE"),
    ],
)
def test_bad_option_values_exit_2_naming_the_option(
    cnn: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], expected: str
) -> None:
    code, err = _run(["--model", str(cnn), "--output", str(tmp_path / "o"), *flags], capsys)
    assert code == 2
    assert expected in err


def test_a_bad_spec_value_names_the_spec_field(
    cnn: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"optimization": {"compile": {"target": "tvm"}}}))
    message = tmp_path / "termination-log"
    args = ["--model", str(cnn), "--output", str(tmp_path / "o"), "--spec", str(spec)]
    code, err = _run([*args, "--termination-message", str(message)], capsys)
    assert code == 2
    assert "optimization.compile.target" in err
    assert json.loads(message.read_text()) == {"v": 1, "error": err.split("error: ", 1)[1].strip()}
    spec.write_text("{not json")
    code, err = _run(args, capsys)
    assert code == 2 and "not valid JSON" in err


def test_pvc_uris_resolve_under_the_mount_root_as_the_job_mounts_them(
    cnn: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The operator mounts each claim at $MODELDEPLOY_PVC_ROOT/CLAIM and passes pvc:// URIs.
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "cnn.onnx").write_bytes(cnn.read_bytes())
    monkeypatch.setenv("MODELDEPLOY_PVC_ROOT", str(tmp_path))
    output = "pvc://store/prefix/default/demo/abc123"
    message_file = tmp_path / "termination-log"
    args = ["--model", "pvc://models/cnn.onnx", "--output", output, "--name", "cnn", "--quantization", "none"]
    code, err = _run([*args, *QUICK_FLAGS, "--termination-message", str(message_file)], capsys)
    assert code == 0, err
    assert json.loads(message_file.read_text())["report"] == f"{output}/report.json"
    repository = tmp_path / "store" / "prefix" / "default" / "demo" / "abc123"
    assert (repository / "cnn" / "1" / "model.onnx").is_file()
    assert read_report(produced(repository))["source"] == "pvc://models/cnn.onnx"
