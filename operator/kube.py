"""The Kubernetes API, as the operator uses it (the only module that imports the `kubernetes` client).

- Children are written with server-side apply, field manager `modeldeploy`, `force=True`: the operator
  is the one owner of the fields it sets; fields it leaves out (e.g. `replicas` under an autoscaler)
  stay with whoever else manages them.
- Transient API failures (409 conflicts, 429 throttling, 5xx, dropped connections) are retried with
  capped exponential backoff and jitter, so a burst of restarts does not hammer the API server in step.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

import aiohttp
from kubernetes.aio import client as _client
from kubernetes.aio import config as _config
from kubernetes.aio import dynamic as _dynamic
from kubernetes.aio.config.config_exception import ConfigException
from kubernetes.aio.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

# The client's functions carry no annotations; they are used through these untyped handles.
k8s_client: Any = _client
k8s_config: Any = _config
DynamicClient: Any = _dynamic.DynamicClient

FIELD_MANAGER = "modeldeploy"
# A second manager that takes over `replicas` when the operator stops setting it: server-side apply of
# only `spec.replicas` under this manager, then the operator's apply without it (Kubernetes docs,
# "Server-Side Apply: transferring ownership"). A merge patch would not do: it takes ownership only of
# fields whose value it changes.
HANDOFF_FIELD_MANAGER = "modeldeploy-handoff"
RETRIABLE_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
REQUEST_TIMEOUT_S = 30.0
MISSING_API_RECHECK_S = 60.0
CONNECTIONS = 32
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")

logger = logging.getLogger(__name__)


class KubeError(Exception):
    """An API call that failed for good: `status` is the HTTP status (0 when nothing answered)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status


@dataclass(frozen=True)
class Backoff:
    attempts: int = 6
    first_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def delay(self, attempt: int) -> float:
        """Full jitter: spread retries of many reconciles instead of synchronising them."""
        return random.uniform(0, min(self.max_delay_s, self.first_delay_s * 2**attempt))


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str | None
    name: str

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> ObjectRef:
        meta = manifest.get("metadata") or {}
        return cls(manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"])


class Kube:
    """An async Kubernetes client session. Use `async with await Kube.connect() as kube:`."""

    def __init__(
        self, api: k8s_client.ApiClient, dynamic: DynamicClient, cache_dir: Path, backoff: Backoff
    ) -> None:
        self._api = api
        self._dynamic = dynamic
        self._cache_dir = cache_dir
        self._backoff = backoff
        self._resources: dict[tuple[str, str], Any] = {}
        self._missing: dict[tuple[str, str], float] = {}  # kinds found missing, and when
        self._discovery_lock = asyncio.Lock()

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, backoff: Backoff | None = None) -> Kube:
        """In a pod: the service account. Elsewhere: `kubeconfig`, `$KUBECONFIG`, or `~/.kube/config`."""
        configuration = k8s_client.Configuration()
        if kubeconfig is None:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)
            except ConfigException:
                await k8s_config.load_kube_config(client_configuration=configuration)
        else:
            await k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        # Up to this many requests at once (default 100): each open TLS connection holds a read buffer of
        # about 128 KiB, and beyond a few dozen concurrent requests an API server answers no faster.
        configuration.connection_pool_maxsize = CONNECTIONS
        if not any(os.environ.get(name) for name in PROXY_VARIABLES):
            # Without proxy variables, aiohttp's trust_env only adds a proxy and ~/.netrc lookup in a thread
            # to every request (a tenth of the operator's CPU at 200 objects); with them, it is kept.
            configuration.client_session_kwargs = {"trust_env": False}
        api = k8s_client.ApiClient(configuration=configuration)
        # Discovery is cached per process: a shared cache file in /tmp can be stale for another cluster.
        cache_dir = Path(tempfile.mkdtemp(prefix="modeldeploy-discovery-"))
        dynamic = await DynamicClient(api, cache_file=str(cache_dir / "discovery.json"))
        return cls(api, dynamic, cache_dir, backoff or Backoff())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._api.close()
        shutil.rmtree(self._cache_dir, ignore_errors=True)

    # -- writes

    async def apply(self, manifest: Mapping[str, Any], field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply: creates the object or brings the fields this manager owns to `manifest`."""
        ref = ObjectRef.of(manifest)
        resource = await self._resource(ref.api_version, ref.kind)
        result = await self._retrying(
            f"apply {ref.kind} {ref.namespace}/{ref.name}",
            lambda: self._dynamic.server_side_apply(
                resource,
                body=dict(manifest),
                name=ref.name,
                namespace=ref.namespace,
                field_manager=field_manager,
                force_conflicts=True,
                _request_timeout=REQUEST_TIMEOUT_S,
            ),
        )
        return _as_dict(result)

    async def merge_patch(
        self,
        ref: ObjectRef,
        patch: Mapping[str, Any],
        subresource: str | None = None,
        field_manager: str = FIELD_MANAGER,
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        """JSON merge patch (`None` deletes a key); None when the object is gone.

        With `resource_version` the write is conditional (optimistic concurrency): the API server refuses
        it with 409 when the object changed since that version, and it is not retried (the caller must
        decide again from the newer object)."""
        resource = await self._resource(ref.api_version, ref.kind)
        if resource_version is not None:
            patch = {
                **patch,
                "metadata": {**(patch.get("metadata") or {}), "resourceVersion": resource_version},
            }
        path = resource.path(name=ref.name, namespace=ref.namespace) + (
            f"/{subresource}" if subresource else ""
        )
        try:
            result = await self._retrying(
                f"patch {ref.kind} {ref.namespace}/{ref.name}{'/' + subresource if subresource else ''}",
                lambda: self._dynamic.request(
                    "patch",
                    path,
                    body=dict(patch),
                    content_type="application/merge-patch+json",
                    field_manager=field_manager,
                    _request_timeout=REQUEST_TIMEOUT_S,
                ),
                retry_conflicts=resource_version is None,
            )
        except KubeError as error:
            if error.status == 404:
                return None
            raise
        return _as_dict(result)

    async def delete(self, ref: ObjectRef) -> bool:
        """Delete with background propagation (the Job's pods go too); False when it was already gone."""
        resource = await self._resource(ref.api_version, ref.kind)
        try:
            await self._retrying(
                f"delete {ref.kind} {ref.namespace}/{ref.name}",
                lambda: self._dynamic.delete(
                    resource,
                    name=ref.name,
                    namespace=ref.namespace,
                    propagation_policy="Background",
                    _request_timeout=REQUEST_TIMEOUT_S,
                ),
            )
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def record_event(
        self,
        involved: Mapping[str, Any],
        event_type: str,
        reason: str,
        message: str,
        now: datetime | None = None,
    ) -> None:
        """A core/v1 Event on `involved` (what `kubectl describe` shows). Failures are logged, not raised."""
        meta = involved.get("metadata") or {}
        moment = (now or datetime.now(tz=UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = meta.get("namespace") or "default"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": moment,
            "lastTimestamp": moment,
            "count": 1,
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
        }
        try:
            resource = await self._resource("v1", "Event")
            await self._retrying(
                f"event {reason}",
                lambda: self._dynamic.create(
                    resource, body=event, namespace=namespace, _request_timeout=REQUEST_TIMEOUT_S
                ),
            )
        except KubeError as error:
            logger.warning(
                "could not record event %s on %s/%s: %s", reason, namespace, meta.get("name"), error
            )

    # -- reads

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        resource = await self._resource(api_version, kind)
        try:
            result = await self._retrying(
                f"get {kind} {namespace}/{name}",
                lambda: self._dynamic.get(
                    resource, name=name, namespace=namespace, _request_timeout=REQUEST_TIMEOUT_S
                ),
            )
        except KubeError as error:
            if error.status == 404:
                return None
            raise
        return _as_dict(result)

    async def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str
    ) -> list[dict[str, Any]]:
        resource = await self._resource(api_version, kind)
        result = await self._retrying(
            f"list {kind} {namespace}",
            lambda: self._dynamic.get(
                resource,
                namespace=namespace,
                label_selector=label_selector,
                _request_timeout=REQUEST_TIMEOUT_S,
            ),
        )
        return list(_as_dict(result).get("items") or [])

    # -- internals

    async def _resource(self, api_version: str, kind: str) -> Any:
        cached = self._resources.get((api_version, kind))
        if cached is not None:
            return cached
        # One lookup at a time: concurrent misses would each re-read the whole discovery API.
        async with self._discovery_lock:
            if (api_version, kind) not in self._resources:
                try:
                    found = await self._dynamic.resources.get(api_version=api_version, kind=kind)
                except ResourceNotFoundError:
                    raise KubeError(
                        404, f"the cluster does not serve {kind} ({api_version}); is its CRD installed?"
                    ) from None
                self._resources[(api_version, kind)] = found
            return self._resources[(api_version, kind)]

    async def serves(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves this kind (a CRD-backed kind is missing until its CRD is installed).
        A missing kind is looked up again after `MISSING_API_RECHECK_S`, so installing it later works."""
        if (api_version, kind) in self._resources:
            return True
        checked = self._missing.get((api_version, kind))
        if checked is not None and time.monotonic() - checked < MISSING_API_RECHECK_S:
            return False
        try:
            await self._resource(api_version, kind)
        except KubeError as error:
            if error.status != 404:
                raise
            self._missing[(api_version, kind)] = time.monotonic()
            return False
        self._missing.pop((api_version, kind), None)
        return True

    async def _retrying(self, what: str, call: Any, retry_conflicts: bool = True) -> Any:
        last: KubeError | None = None
        for attempt in range(self._backoff.attempts):
            try:
                return await call()
            except DynamicApiError as error:
                status = int(error.status or 0)
                last = KubeError(status, _summary(error))
                if status not in RETRIABLE_STATUSES or (status == 409 and not retry_conflicts):
                    raise last from None
            except (aiohttp.ClientError, TimeoutError) as error:
                last = KubeError(0, f"{what}: {type(error).__name__}: {error}")
            if attempt + 1 < self._backoff.attempts:
                delay = self._backoff.delay(attempt)
                logger.info("%s failed (%s); retrying in %.2fs", what, last, delay)
                await asyncio.sleep(delay)
        assert last is not None
        raise last


def _summary(error: DynamicApiError) -> str:
    try:
        return cast(str, error.summary())  # type: ignore[no-untyped-call]
    except ValueError:
        return str(error.reason)


def _as_dict(result: Any) -> dict[str, Any]:
    if hasattr(result, "to_dict"):
        return cast(dict[str, Any], result.to_dict())
    return cast(dict[str, Any], result) if isinstance(result, dict) else {}
