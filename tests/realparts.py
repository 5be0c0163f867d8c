"""How tests treat a missing real part (Triton, Prometheus, helm, ...).

Outside CI a missing part skips the test with the reason, so a developer without it still runs the rest.
Under CI (`CI=true`) the same situation fails the test: CI must never go green by skipping a real part.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(part: str, why: str) -> NoReturn:
    """Skip (or, under CI, fail) because `part` is not available, saying why."""
    message = f"real part {part!r} is not available: {why}"
    if in_ci():
        pytest.fail(message + " (CI=true: a missing real part is a failure)", pytrace=False)
    pytest.skip(message)
