"""Triton smoke check (tritonclient over HTTP): is a revision able to answer before it gets traffic?

The only module that talks to Triton. `smoke_check` never raises: it returns `SmokeResult(ok, reason)`
and the reason says which step failed (server not live, model not ready and why, inference error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    reason: str


def smoke_check(url: str, model: str, timeout_s: float = 10) -> SmokeResult:
    """Server live, `model` READY, and one inference with zero inputs built from the model's metadata."""
    try:
        address, use_ssl = _address(url)
    except ValueError as error:
        return SmokeResult(False, str(error))

    import tritonclient.http as triton_http  # noqa: PLC0415  # heavy (gevent); only when a check runs

    try:
        client = triton_http.InferenceServerClient(
            url=address, ssl=use_ssl, connection_timeout=timeout_s, network_timeout=timeout_s
        )
    except Exception as error:  # the client validates the address eagerly
        return SmokeResult(False, f"cannot reach Triton at {url}: {_describe(error)}")
    try:
        return _check(client, url, model)
    except Exception as error:  # any failure of the server or the client is the check's answer
        return SmokeResult(False, f"Triton at {url}: {_describe(error)}")
    finally:
        client.close()


def _check(client: Any, url: str, model: str) -> SmokeResult:
    try:
        live = client.is_server_live()
    except Exception as error:
        return SmokeResult(False, f"Triton at {url} is not reachable: {_describe(error)}")
    if not live:
        return SmokeResult(False, f"Triton at {url} answers but is not live")
    if not client.is_model_ready(model):
        return SmokeResult(False, f"model {model!r} is not ready on {url}: {_model_state(client, model)}")

    metadata = client.get_model_metadata(model)
    try:
        inputs = [_zero_input(spec) for spec in metadata.get("inputs", [])]
    except ValueError as error:
        return SmokeResult(False, f"model {model!r}: {error}")
    try:
        result = client.infer(model, inputs)
    except Exception as error:
        return SmokeResult(False, f"model {model!r} is ready but its inference failed: {_describe(error)}")
    outputs = [spec["name"] for spec in metadata.get("outputs", [])]
    absent = [name for name in outputs if result.as_numpy(name) is None]
    if absent:
        return SmokeResult(False, f"model {model!r} answered without output(s) {', '.join(absent)}")
    return SmokeResult(
        True, f"model {model!r} is ready on {url} and answered one inference ({len(inputs)} inputs)"
    )


def _zero_input(spec: dict[str, Any]) -> Any:
    """A zero (or empty-string) tensor for one input; variable dimensions, batch included, become 1."""
    import numpy as np  # noqa: PLC0415
    import tritonclient.http as triton_http  # noqa: PLC0415
    from tritonclient.utils import triton_to_np_dtype  # noqa: PLC0415

    name, datatype = spec["name"], spec["datatype"]
    shape = [1 if int(dim) < 0 else int(dim) for dim in spec["shape"]]
    dtype = triton_to_np_dtype(datatype)
    if dtype is None:
        raise ValueError(f"input {name!r} has datatype {datatype}, which the smoke check cannot generate")
    data = np.full(shape, b"", dtype=np.object_) if datatype == "BYTES" else np.zeros(shape, dtype=dtype)
    tensor = triton_http.InferInput(name, shape, datatype)
    tensor.set_data_from_numpy(data)
    return tensor


def _model_state(client: Any, model: str) -> str:
    """Why a model is not ready, from the repository index (state and Triton's reason)."""
    try:
        index = client.get_model_repository_index()
    except Exception as error:
        return f"not READY (the repository index is unavailable: {_describe(error)})"
    entries = [entry for entry in index if entry.get("name") == model]
    if not entries:
        known = sorted({str(entry.get("name")) for entry in index})
        return f"no such model in the repository (it holds: {', '.join(known) or 'nothing'})"
    states = []
    for entry in entries:
        state = f"version {entry.get('version', '?')} {entry.get('state', 'UNKNOWN')}"
        if str(entry.get("reason") or "").strip():
            # Triton appends the model's traceback: the first line says what happened.
            state += f" ({str(entry['reason']).strip().splitlines()[0][:300]})"
        states.append(state)
    return "; ".join(states)


def _address(url: str) -> tuple[str, bool]:
    """tritonclient wants `host:port` and a separate ssl flag."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"the Triton URL must look like http://HOST:PORT, got {url!r}")
    if parts.path.strip("/"):
        raise ValueError(f"the Triton URL must not have a path, got {url!r}")
    return parts.netloc, parts.scheme == "https"


def _describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300] if text else type(error).__name__
