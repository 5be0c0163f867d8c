"""The operator as the sandbox runs it: `modeldeploy run` itself (same handlers, same settings, same
command line), with one difference: its smoke check reaches a canary pod's Triton at the loopback address
where the sandbox runs that pod (`modeldeploy.sandbox.pods.loopback_address`), since the pod IP the API
server holds (10.244.x.y) routes nowhere on this machine. Started as
`python -m modeldeploy.sandbox.operator_process run ARGS...` (from a folder other than the repository root).
"""

from __future__ import annotations

import sys
from typing import Any

import kopf

import modeldeploy.handlers  # noqa: F401  (registers the operator's handlers first)
from modeldeploy.cli import main as cli_main
from modeldeploy.probes import TritonPrometheusProbes
from modeldeploy.sandbox.pods import loopback_address


@kopf.on.startup()
async def reach_pods_on_loopback(memo: kopf.Memo, **_: Any) -> None:
    """Runs after `modeldeploy.handlers.start` (registered first), which created the runtime."""
    runtime = memo.runtime
    runtime.probes = TritonPrometheusProbes(runtime.kube, address_of=loopback_address)


if __name__ == "__main__":
    sys.exit(cli_main(sys.argv[1:]))
