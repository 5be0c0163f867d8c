"""Where the real `tritonserver` comes from here: PyPI `nvidia-pytriton` ships it (2.51, python backend
only). Its python-backend stub is shipped per Python version and must sit next to the backend library, the
bundled libraries must be on LD_LIBRARY_PATH, and the stub imports numpy from the Python on PATH."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path


class TritonMissingError(Exception):
    """nvidia-pytriton is not installed, or its install lacks a part."""


@dataclass(frozen=True)
class TritonDistribution:
    server: Path
    backends: Path
    stub: Path
    libraries: Path

    def backend_directory(self, folder: Path) -> Path:
        """A backend folder with the python backend and its stub side by side (pytriton keeps them apart)."""
        python_backend = folder / "python"
        if not python_backend.is_dir():
            python_backend.mkdir(parents=True)
            for entry in (self.backends / "python").iterdir():
                if entry.is_file():
                    (python_backend / entry.name).symlink_to(entry)
            (python_backend / "triton_python_backend_stub").symlink_to(self.stub)
        return folder

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        env = dict(base)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            part for part in (str(self.libraries), os.environ.get("LD_LIBRARY_PATH", "")) if part
        )
        return env


def find_triton() -> TritonDistribution:
    try:
        import pytriton  # noqa: PLC0415  # optional real part
    except ImportError as error:
        raise TritonMissingError(f"PyPI nvidia-pytriton is not installed ({error})") from error
    root = Path(pytriton.__file__).parent
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    distribution = TritonDistribution(
        server=root / "tritonserver" / "bin" / "tritonserver",
        backends=root / "tritonserver" / "backends",
        stub=root / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub",
        libraries=root.parent / "nvidia_pytriton.libs",
    )
    for path in (distribution.server, distribution.backends, distribution.stub, distribution.libraries):
        if not path.exists():
            raise TritonMissingError(f"{path} is missing from the nvidia-pytriton install")
    return distribution
