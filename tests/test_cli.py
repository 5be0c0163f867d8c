"""The CLI surface every user meets first: version and help on every subcommand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modeldeploy import __version__
from modeldeploy.cli import SUBCOMMANDS


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    # The console script, not `python -m`: run from the repo root, `-m` would put the folder `operator/`
    # ahead of the standard library's `operator` module.
    script = Path(sys.executable).with_name("modeldeploy")
    return subprocess.run([str(script), *args], capture_output=True, text=True, check=False, timeout=120)


def test_version_prints_package_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"modeldeploy {__version__}"


@pytest.mark.parametrize("command", [m.__name__.rsplit(".", 1)[1] for m in SUBCOMMANDS])
def test_every_subcommand_has_help(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: modeldeploy {command}" in result.stdout


def test_unknown_subcommand_exits_2() -> None:
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
