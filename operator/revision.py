"""The revision of a ModelDeployment: what must be optimized and served again (through a canary) when it
changes. The decision field by field is the table in docs/api.md ("Revisions")."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from modeldeploy.spec import ModelDeploymentSpec

# A change to these sections changes the bytes served or where they come from, or restarts every Triton
# pod (image, resources, batching, scheduling): a new revision, optimized once and rolled out as a canary.
# `storage` is part of it: artifacts live under <storage>/<namespace>/<name>/<revision>/, so a new store
# needs a new Job to write them there before any pod reads from it.
REVISION_SECTIONS = ("model", "optimization", "serving", "storage")
# Fields of those sections applied in place: the number of pods serves the same bytes.
IN_PLACE_FIELDS: dict[str, tuple[str, ...]] = {"serving": ("replicas",)}
REVISION_LENGTH = 10


def revision_json(spec: ModelDeploymentSpec, *sections: str) -> dict[str, Any]:
    """The sections as the CRD writes them (camelCase, defaults applied), without in-place fields."""
    dumped = spec.section_json(*sections)
    for section, fields in IN_PLACE_FIELDS.items():
        if section in dumped:
            dumped[section] = {k: v for k, v in dumped[section].items() if k not in fields}
    return dumped


def compute_revision(spec: ModelDeploymentSpec) -> str:
    """First 10 hex characters of SHA-256 over the canonical JSON of the revision's fields.

    Defaults are applied and unset optional fields left out, so writing a default explicitly, reordering
    keys, or a later release adding an optional field does not start a new revision.
    """
    canonical = json.dumps(
        revision_json(spec, *REVISION_SECTIONS), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:REVISION_LENGTH]
