"""How many replicas each track runs for a canary weight, for both kinds of traffic routing.

`replicas` routing has no router: Service `NAME` spreads requests over every ready pod of both tracks,
so the weight a canary gets is its share of the pods. `gatewayAPI` routing sends exactly `weight` percent
through the HTTPRoute, so the canary only needs enough pods to carry that share.
When an autoscaler owns the stable Deployment, the operator never sets the stable's replicas (`None`):
the canary is sized from what the autoscaler currently runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Routing = Literal["replicas", "gatewayAPI"]


@dataclass(frozen=True)
class ReplicaSplit:
    stable: int | None  # None: leave spec.replicas to the autoscaler
    canary: int


def split_replicas(
    weight: int,
    routing: Routing,
    serving_replicas: int,
    autoscaled: bool,
    observed_stable_replicas: int | None,
) -> ReplicaSplit:
    """Replica counts of stable and canary for a canary `weight` in percent (0..100)."""
    if not 0 <= weight <= 100:
        raise ValueError(f"canary weight must be within 0..100, got {weight}")
    if autoscaled:
        # The autoscaler's current choice is the fleet size; fall back to the configured floor.
        base = max(observed_stable_replicas or serving_replicas, 1)
        return ReplicaSplit(stable=None, canary=_canary_beside(base, weight, routing))
    total = max(serving_replicas, 1)
    if routing == "gatewayAPI":
        return ReplicaSplit(stable=total, canary=_at_least_one(total * weight / 100))
    canary = min(_at_least_one(total * weight / 100), total)
    # Keep one stable pod at least: the stable track must still serve if the canary fails.
    return ReplicaSplit(stable=max(total - canary, 1), canary=canary)


def _canary_beside(stable: int, weight: int, routing: Routing) -> int:
    """Canary pods next to a stable fleet the operator does not size (an autoscaler owns it)."""
    if routing == "gatewayAPI" or weight >= 100:
        return _at_least_one(stable * weight / 100)
    # share = canary / (stable + canary)  =>  canary = stable * w / (100 - w)
    return _at_least_one(stable * weight / (100 - weight))


def _at_least_one(value: float) -> int:
    return max(math.ceil(value - 1e-9), 1)
