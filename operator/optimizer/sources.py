"""Where models, calibration data and the output repository live: local paths, file://, https://, s3://, pvc://.

The only module that touches the network or object stores. s3:// needs boto3 (optional; a clear error
otherwise). pvc://CLAIM/PATH is read from where the Job mounts the claim: `$MODELDEPLOY_PVC_ROOT/CLAIM/PATH`
(default root `/mnt/pvc`).
"""

from __future__ import annotations

import importlib
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from modeldeploy.optimizer.errors import OptimizerInputError

PVC_ROOT_ENV = "MODELDEPLOY_PVC_ROOT"
DEFAULT_PVC_ROOT = "/mnt/pvc"
DOWNLOAD_TIMEOUT_S = 120


def _s3_client(uri: str) -> Any:
    try:
        boto3 = importlib.import_module("boto3")
    except ImportError:
        raise OptimizerInputError(
            f"{uri}: s3:// needs the Python package boto3, which is not installed in this image"
        ) from None
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("S3_ENDPOINT") or None
    return boto3.client("s3", endpoint_url=endpoint)


def _split_bucket(uri: str) -> tuple[str, str]:
    parsed = urllib.parse.urlparse(uri)
    if not parsed.netloc:
        raise OptimizerInputError(f"{uri}: expected s3://BUCKET/KEY")
    return parsed.netloc, parsed.path.lstrip("/")


def local_path(uri: str) -> Path | None:
    """The local path a URI names (plain path, file://, pvc://), or None for remote URIs."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else uri)
    if parsed.scheme == "pvc":
        if not parsed.netloc:
            raise OptimizerInputError(f"{uri}: expected pvc://CLAIM/PATH")
        root = Path(os.environ.get(PVC_ROOT_ENV, DEFAULT_PVC_ROOT))
        return root / parsed.netloc / parsed.path.lstrip("/")
    return None


def fetch(uri: str, workdir: Path) -> Path:
    """A local file or directory holding what `uri` names (downloaded into `workdir` when remote)."""
    path = local_path(uri)
    if path is not None:
        if not path.exists():
            raise OptimizerInputError(f"{uri}: no such file or directory")
        return path
    scheme = urllib.parse.urlparse(uri).scheme
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / (Path(urllib.parse.urlparse(uri).path).name or "download")
    if scheme in ("http", "https"):
        try:
            with (
                urllib.request.urlopen(uri, timeout=DOWNLOAD_TIMEOUT_S) as response,
                target.open("wb") as out,
            ):
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as error:
            raise OptimizerInputError(f"{uri}: download failed: {error}") from None
        return target
    if scheme == "s3":
        return _fetch_s3(uri, target)
    raise OptimizerInputError(
        f"{uri}: unsupported scheme {scheme!r} (use a path, file://, https://, s3://, pvc://)"
    )


def _fetch_s3(uri: str, target: Path) -> Path:
    client = _s3_client(uri)
    bucket, key = _split_bucket(uri)
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
        for item in page.get("Contents", [])
    ]
    if not keys:
        raise OptimizerInputError(f"{uri}: no such object or prefix")
    if keys == [key]:
        client.download_file(bucket, key, str(target))
        return target
    # A prefix (e.g. a calibration folder): mirror it.
    target.mkdir(parents=True, exist_ok=True)
    for item in keys:
        destination = target / os.path.relpath(item, key)
        destination.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, item, str(destination))
    return target


def read_remote_text(uri: str, relative: str) -> str | None:
    """The text of `uri/relative` on a remote store, or None when it does not exist (cache checks)."""
    if urllib.parse.urlparse(uri).scheme != "s3":
        return None
    client = _s3_client(uri)
    bucket, prefix = _split_bucket(uri)
    try:
        body = client.get_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/{relative}")["Body"]
    except Exception:  # boto3 raises its own ClientError type for a missing key
        return None
    return str(body.read().decode("utf-8"))


def remote_exists(uri: str, relative: str) -> bool:
    client = _s3_client(uri)
    bucket, prefix = _split_bucket(uri)
    try:
        client.head_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/{relative}")
    except Exception:
        return False
    return True


def publish(local_dir: Path, uri: str) -> None:
    """Upload a finished repository to a remote output (local outputs are written in place)."""
    client = _s3_client(uri)
    bucket, prefix = _split_bucket(uri)
    # report.json last: its presence is what marks the revision complete for the cache.
    files = sorted(path for path in local_dir.rglob("*") if path.is_file())
    files.sort(key=lambda path: path.name == "report.json")
    for path in files:
        client.upload_file(
            str(path), bucket, f"{prefix.rstrip('/')}/{path.relative_to(local_dir).as_posix()}"
        )
