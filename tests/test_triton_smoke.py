"""The smoke check the operator runs before a canary gets traffic, against a real tritonserver."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from realparts import missing
from realservers import PartMissingError, TritonServer, find_triton, start_triton, stop_all

from modeldeploy.cluster.processes import free_port
from modeldeploy.triton import smoke_check

pytestmark = pytest.mark.realpart("tritonserver")


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    try:
        find_triton()
    except PartMissingError as error:
        missing(error.part, error.why)
    models = {"classifier": "fast", "broken": "broken", "text": "text", "unloadable": "unloadable"}
    # Keep serving when a model fails to load, as a pod whose model is bad does: the smoke check must say why.
    keep_going = ("--exit-on-error=false", "--strict-readiness=false")
    server = start_triton("smoke", models, tmp_path_factory.mktemp("smoke"), extra_args=keep_going)
    try:
        server.wait_ready(models=["classifier", "broken", "text"])
        yield server
    finally:
        stop_all(server)


def test_loaded_model_passes(triton: TritonServer) -> None:
    result = smoke_check(triton.url, "classifier")
    assert result.ok, result.reason
    assert (
        result.reason == f"model 'classifier' is ready on {triton.url} and answered one inference (1 inputs)"
    )


def test_works_from_a_worker_thread_as_the_operator_calls_it(triton: TritonServer) -> None:
    # tritonclient.http runs on gevent; the operator calls it through asyncio.to_thread.
    async def check_twice() -> list[bool]:
        results = await asyncio.gather(
            asyncio.to_thread(smoke_check, triton.url, "classifier", 10),
            asyncio.to_thread(smoke_check, triton.url, "text", 10),
        )
        return [result.ok for result in results]

    assert asyncio.run(check_twice()) == [True, True]


def test_string_inputs_with_a_batch_dimension_are_generated(triton: TritonServer) -> None:
    # `text` takes BYTES of shape [2] with max_batch_size 4: metadata says [-1, 2].
    result = smoke_check(triton.url.removeprefix("http://"), "text")
    assert result.ok, result.reason


def test_missing_model_fails_and_lists_what_is_there(triton: TritonServer) -> None:
    result = smoke_check(triton.url, "clasifier")
    assert not result.ok
    assert result.reason == (
        f"model 'clasifier' is not ready on {triton.url}: "
        "no such model in the repository (it holds: broken, classifier, text, unloadable)"
    )


def test_model_that_failed_to_load_fails_with_triton_s_reason(triton: TritonServer) -> None:
    result = smoke_check(triton.url, "unloadable")
    assert not result.ok
    assert result.reason == (
        f"model 'unloadable' is not ready on {triton.url}: version 1 UNAVAILABLE"
        " (Internal: TritonModelException: injected load failure: weights are unreadable)"
    )


def test_model_that_raises_fails_with_triton_s_message(triton: TritonServer) -> None:
    result = smoke_check(triton.url, "broken")
    assert not result.ok
    assert result.reason.startswith("model 'broken' is ready but its inference failed:")
    assert "injected failure" in result.reason


def test_server_that_is_not_there_fails_as_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = smoke_check(url, "classifier", timeout_s=2)
    assert not result.ok
    assert result.reason.startswith(f"Triton at {url} is not reachable:")


@pytest.mark.parametrize("url", ["ftp://host:8000", "http://host:8000/v2", "http://"])
def test_malformed_urls_are_refused_with_a_reason(url: str) -> None:
    result = smoke_check(url, "classifier")
    assert not result.ok
    assert url in result.reason
