"""The reconcile loop's read-your-writes bookkeeping (`Runtime.wrote` / `saw` / `settle`).

After writing status, the loop waits for the watch to deliver its own write before deciding again, so it
never decides on a stale status. A write that changed nothing gets no new resourceVersion and no watch
event from the API server: waiting for its echo would stall the loop until the consistency timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from modeldeploy.reconciler import Runtime

KEY = ("ml", "ocr")
# Long enough that a wrong wait shows up as the test's own timeout, never as a pass.
NEVER_S = 60.0


def make_runtime() -> Runtime:
    # The bookkeeping never touches the clients; nothing here talks to an API server.
    none = cast(Any, None)
    return Runtime(kube=none, probes=none, metrics=none, consistency_timeout_s=NEVER_S)


async def test_a_write_that_changed_nothing_does_not_wait_for_an_echo() -> None:
    runtime = make_runtime()
    runtime.wrote(KEY, before="41", after="41")
    await asyncio.wait_for(runtime.settle(KEY, "41"), timeout=2.0)


async def test_a_real_write_waits_until_the_watch_delivers_it() -> None:
    runtime = make_runtime()
    runtime.wrote(KEY, before="41", after="42")
    settling = asyncio.create_task(runtime.settle(KEY, "41"))
    await asyncio.sleep(0.05)
    assert not settling.done(), "decided again on the body from before our own write"
    assert runtime.saw(KEY, "42") is True  # the echo of our own write is no news ...
    await asyncio.wait_for(settling, timeout=2.0)  # ... but it lets the loop go on


async def test_a_body_already_past_the_write_does_not_wait() -> None:
    runtime = make_runtime()
    runtime.wrote(KEY, before="41", after="42")
    await asyncio.wait_for(runtime.settle(KEY, "43"), timeout=2.0)
