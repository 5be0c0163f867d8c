"""The revision of a ModelDeployment: what must be optimized and served again when it changes."""

from __future__ import annotations

import hashlib
import json

from modeldeploy.spec import ModelDeploymentSpec

# Changing these sections builds a new model server; autoscaling, rollout and monitoring apply in place.
REVISION_SECTIONS = ("model", "optimization", "serving")
REVISION_LENGTH = 10


def compute_revision(spec: ModelDeploymentSpec) -> str:
    """First 10 hex characters of SHA-256 over the canonical JSON of model, optimization and serving.

    Defaults are applied and unset optional fields left out, so writing a default explicitly, reordering
    keys, or a later release adding an optional field does not start a new revision.
    """
    canonical = json.dumps(
        spec.section_json(*REVISION_SECTIONS), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:REVISION_LENGTH]
