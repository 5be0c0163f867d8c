"""Where the control plane's binaries come from: `hack/controlplane/build.sh` builds etcd, kube-apiserver
and kube-controller-manager from the Go modules pinned in that folder, into a cache keyed by go.sum."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import modeldeploy

BINARIES_ENV = "MODELDEPLOY_CONTROLPLANE_BIN"
NAMES = ("etcd", "kube-apiserver", "kube-controller-manager")


class BinariesMissingError(Exception):
    """The control plane cannot be built or found here."""


@dataclass(frozen=True)
class Binaries:
    folder: Path

    def path(self, name: str) -> Path:
        return self.folder / name


def source_folder() -> Path | None:
    """hack/controlplane of the checkout this package is installed from (editable install), if any."""
    for root in (Path(modeldeploy.__file__).resolve().parent.parent, Path.cwd()):
        candidate = root / "hack" / "controlplane"
        if (candidate / "build.sh").is_file():
            return candidate
    return None


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in NAMES)


def ensure_binaries(progress: Callable[[str], None] | None = None) -> Binaries:
    """The binaries, building them on first use (10-25 minutes on 2 cores; then a no-op)."""
    override = os.environ.get(BINARIES_ENV)
    if override:
        if not _complete(Path(override)):
            raise BinariesMissingError(f"${BINARIES_ENV}={override} lacks one of {', '.join(NAMES)}")
        return Binaries(Path(override))
    source = source_folder()
    if source is None:
        raise BinariesMissingError("hack/controlplane/build.sh not found (run from a modeldeploy checkout)")
    if shutil.which("go") is None:
        raise BinariesMissingError("the Go toolchain is needed to build the control plane (`go` not on PATH)")
    if progress is not None:
        progress("building the control plane from Go modules if needed (hack/controlplane/build.sh)")
    # build.sh's progress (stderr) goes to the person's terminal; its stdout names the folder.
    result = subprocess.run(
        [str(source / "build.sh")], stdout=subprocess.PIPE, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise BinariesMissingError(f"hack/controlplane/build.sh failed with exit code {result.returncode}")
    folder = Path(result.stdout.strip().splitlines()[-1])
    if not _complete(folder):
        raise BinariesMissingError(f"build.sh reported {folder}, which lacks the binaries")
    return Binaries(folder)
