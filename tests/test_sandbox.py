"""`make run`'s story as a person runs it: `modeldeploy sandbox` in a subprocess, on the real control plane,
the real operator, real tritonserver pods and a real Prometheus (docs/sandbox.md). Shortened: one canary
step (50 %) and a rollback after the first failed analysis. It asserts that revision 2 is promoted because
its analyses passed, that revision 3 is rolled back because its analysis failed on latency, that the
summary agrees with Prometheus and report.json, that every process the sandbox started is gone, and that a
second run (to revision 1 Ready) works after the first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from realparts import missing

from modeldeploy.cluster.binaries import BinariesMissingError, ensure_binaries
from modeldeploy.sandbox.monitoring import ensure_prometheus
from modeldeploy.sandbox.tritonserver import TritonMissingError, find_triton


@pytest.fixture(scope="module")
def real_parts() -> None:
    try:
        ensure_binaries()
        ensure_prometheus(lambda _message: None)
        find_triton()
    except (BinariesMissingError, TritonMissingError) as error:
        missing("sandbox (control plane, Prometheus with Kubernetes discovery, tritonserver)", str(error))


def run_sandbox(workdir: Path, *args: str, timeout_s: float = 400) -> tuple[str, dict[str, Any]]:
    result_path = workdir / "result.json"
    workdir.mkdir(parents=True)
    command = [str(Path(sys.executable).parent / "modeldeploy"), "sandbox", "--dir", str(workdir / "run")]
    process = subprocess.run(
        [*command, *args, "--result", str(result_path)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=workdir,
        check=False,
    )
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-8000:]
    result: dict[str, Any] = json.loads(result_path.read_text())
    return output, result


def assert_nothing_left(result: dict[str, Any]) -> None:
    assert result["pids"], "the sandbox reported no processes: it cannot have run the story"
    assert result["leftRunning"] == []
    for pid in result["pids"]:  # each was the leader of its own process group: no process of it is left
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


@pytest.mark.timeout(900)
@pytest.mark.usefixtures("real_parts")
def test_the_story_promotes_on_passing_analyses_and_rolls_back_the_slow_revision(tmp_path: Path) -> None:
    output, result = run_sandbox(tmp_path / "first", "--steps", "50", "--failure-threshold", "1")
    revisions = {revision["number"]: revision for revision in result["revisions"]}
    first, second, third = revisions[1], revisions[2], revisions[3]
    assert first["outcome"] == "stable"
    assert first["optimization"]["state"] == "Succeeded"

    # Promoted because the analysis at its only step passed, with both tracks measured.
    assert second["outcome"] == "promoted", output[-6000:]
    passed = [verdict for verdict in second["verdicts"] if verdict["verdict"] == "pass"]
    assert passed, second["verdicts"]
    assert second["reason"] == passed[-1]["reason"]
    assert passed[-1]["canary"]["requests"] >= 20
    assert passed[-1]["stable"]["requests"] >= 20
    assert (
        second["optimization"]["chosen"] != first["optimization"]["chosen"] or second["name"] != first["name"]
    )

    # Rolled back because its analysis failed on latency (the injected delay), never passed.
    assert third["outcome"] == "rolled back", output[-6000:]
    verdicts = [verdict["verdict"] for verdict in third["verdicts"]]
    assert "fail" in verdicts
    assert "pass" not in verdicts
    failed = next(verdict for verdict in third["verdicts"] if verdict["verdict"] == "fail")
    assert failed["canary"]["p99Ms"] > 4 * failed["stable"]["p99Ms"]  # maxLatencyRatio 4
    assert failed["checks"] == ["maxLatencyRatio"], failed
    assert failed["reason"] in third["reason"]
    assert "slow on purpose" in output

    # The summary's request figures are Prometheus' own, and its optimizer figures those of report.json.
    summary = {row["revision"].split()[0]: row for row in result["summary"]}
    for number in ("1", "2"):
        row = summary[number]
        assert row["scraped"] is not None
        assert row["scraped"] > 0
        assert abs((row["sent"] - row["failed"]) - row["scraped"]) <= max(3, 0.02 * row["sent"]), row
    assert sorted(result["reportJson"]) == ["1", "2", "3"]
    for number, report in result["reportJson"].items():
        status = revisions[int(number)]["optimization"]
        assert report["chosen"] == status["chosen"]
        assert report["after"]["size_bytes"] == status["after"]["sizeBytes"]
        assert report["baseline"]["latency_ms_p50"] == status["before"]["latencyMs"]
    assert "DIFFERS" not in output
    assert_nothing_left(result)

    # A second run after the first: a fresh cluster, the same ports free again, revision 1 Ready.
    _, again = run_sandbox(tmp_path / "second", "--until", "ready")
    assert {revision["number"]: revision["outcome"] for revision in again["revisions"]} == {1: "stable"}
    assert_nothing_left(again)
