"""Fail early when the runner's disk cannot hold the serving image: `image_disk.py IMAGE`.

The Triton image is several GiB compressed; kind's node pulls it (compressed download, then unpacked layers
in its containerd store), next to the two images this run builds and loads. Asking the registry for the
layer sizes (`docker manifest inspect -v`) costs a second; discovering a full disk costs the whole run.
Prints the figures either way; exits 1 when the free space is short.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

GIB = 1024**3
# Compressed download + unpacked layers (about twice the compressed size for Triton's layers).
UNPACK_FACTOR = 3.0
# Our two images, the kind node image and the cluster's own data.
HEADROOM_BYTES = 6 * GIB


def compressed_size(inspected: Any, architecture: str = "amd64") -> int:
    """Sum of the layer sizes of `architecture` in `docker manifest inspect -v` output."""
    entries = inspected if isinstance(inspected, list) else [inspected]
    for entry in entries:
        platform = (entry.get("Descriptor") or {}).get("platform") or {}
        if platform.get("architecture", architecture) != architecture:
            continue
        manifest = entry.get("SchemaV2Manifest") or entry.get("OCIManifest") or {}
        layers = manifest.get("layers") or []
        if layers:
            return sum(int(layer["size"]) for layer in layers)
    raise ValueError(f"no {architecture} layers in the manifest")


def required_bytes(compressed: int) -> int:
    return int(compressed * UNPACK_FACTOR) + HEADROOM_BYTES


def main(argv: list[str]) -> int:
    image = argv[1]
    inspected = json.loads(
        subprocess.run(
            ["docker", "manifest", "inspect", "-v", image], capture_output=True, text=True, check=True
        ).stdout
    )
    root = subprocess.run(
        ["docker", "info", "-f", "{{.DockerRootDir}}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    compressed = compressed_size(inspected)
    needed, free = required_bytes(compressed), shutil.disk_usage(root or "/").free
    print(
        f"e2e: serving image {image}: {compressed / GIB:.1f} GiB compressed, needs about "
        f"{needed / GIB:.1f} GiB; free on {root}: {free / GIB:.1f} GiB"
    )
    if free < needed:
        print(f"e2e: not enough disk for {image}: free {needed / GIB:.1f} GiB first", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
