"""A bounded load generator: real inference requests (tritonclient over HTTP) at a fixed rate, each sent
to one ready endpoint of the model's Service picked at random, as kube-proxy picks one per connection. The
endpoints come from the Service's EndpointSlices (what kube-proxy reads), refreshed every second, so the
traffic share of each revision follows its share of ready replicas."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modeldeploy.cluster.rest import ApiError, RestClient
from modeldeploy.sandbox.pods import loopback_address


@dataclass(frozen=True)
class Endpoint:
    pod: str
    address: str  # where the pod's process listens (loopback)
    port: int


def ready_endpoints(slices: Mapping[str, Any], port_name: str = "http") -> list[Endpoint]:
    """The ready endpoints of a Service's EndpointSlices, as kube-proxy would route to them."""
    found: list[Endpoint] = []
    for item in slices.get("items", ()):
        ports = [p["port"] for p in item.get("ports") or () if p.get("name") == port_name]
        if not ports:
            continue
        for endpoint in item.get("endpoints") or ():
            if (endpoint.get("conditions") or {}).get("ready") is not True:
                continue
            pod = (endpoint.get("targetRef") or {}).get("name", "")
            found.extend(Endpoint(pod, loopback_address(ip), ports[0]) for ip in endpoint["addresses"][:1])
    return found


@dataclass
class LoadGenerator:
    client: RestClient
    namespace: str
    service: str
    model: str
    rate_per_s: float
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # inputs with variable dimensions
    workers: int = 4
    sent: Counter[str] = field(default_factory=Counter)  # by pod
    failed: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    _endpoints: list[Endpoint] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> LoadGenerator:
        self._threads = [threading.Thread(target=self._follow_endpoints, name="load-endpoints", daemon=True)]
        self._threads += [
            threading.Thread(target=self._send, name=f"load-{index}", daemon=True)
            for index in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def endpoints(self) -> list[Endpoint]:
        with self._lock:
            return list(self._endpoints)

    def _follow_endpoints(self) -> None:
        path = f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices"
        selector = {"labelSelector": f"kubernetes.io/service-name={self.service}"}
        while not self._stop.is_set():
            try:
                found = ready_endpoints(self.client.request("GET", path, params=selector))
            except (ApiError, OSError):
                found = None
            if found is not None:
                with self._lock:
                    self._endpoints = found
            self._stop.wait(1.0)

    def _send(self) -> None:
        import numpy as np  # noqa: PLC0415  # only the load threads need these
        import tritonclient.http as triton_http  # noqa: PLC0415

        clients: dict[str, Any] = {}
        inputs: list[Any] | None = None
        period = self.workers / self.rate_per_s
        next_at = time.monotonic() + random.random() * period  # spreading, not secrecy
        rng = np.random.default_rng()
        try:
            while not self._stop.wait(max(0.0, next_at - time.monotonic())):
                next_at = max(next_at + period, time.monotonic() - period)  # bounded: no catching up
                endpoints = self.endpoints()
                if not endpoints:
                    continue
                endpoint = random.choice(endpoints)
                url = f"{endpoint.address}:{endpoint.port}"
                if url not in clients:
                    clients[url] = triton_http.InferenceServerClient(url=url, network_timeout=30)
                try:
                    if inputs is None:
                        inputs = _random_inputs(clients[url].get_model_metadata(self.model), rng, self.shapes)
                    clients[url].infer(self.model, inputs)
                except Exception as error:  # every failure counts, none stops the load
                    with self._lock:
                        self.failed[endpoint.pod] += 1
                        if len(self.errors) < 5:
                            self.errors.append(f"{endpoint.pod}: {error}")
                with self._lock:
                    self.sent[endpoint.pod] += 1
        finally:
            for client in clients.values():
                client.close()


def _random_inputs(metadata: Mapping[str, Any], rng: Any, shapes: Mapping[str, tuple[int, ...]]) -> list[Any]:
    """Random tensors for every input: the shape given for it, else variable dimensions become 1."""
    import numpy as np  # noqa: PLC0415
    import tritonclient.http as triton_http  # noqa: PLC0415
    from tritonclient.utils import triton_to_np_dtype  # noqa: PLC0415

    tensors = []
    for spec in metadata.get("inputs", ()):
        shape = list(shapes.get(spec["name"]) or [1 if int(dim) < 0 else int(dim) for dim in spec["shape"]])
        data = rng.random(shape).astype(triton_to_np_dtype(spec["datatype"]) or np.float32)
        tensor = triton_http.InferInput(spec["name"], shape, spec["datatype"])
        tensor.set_data_from_numpy(data)
        tensors.append(tensor)
    return tensors
