"""kmock's KubernetesEmulator, extended with the API-server behaviour the operator relies on. Every
API-facing test runs on the real control plane (tests/cluster.py); the emulator stays only for faults the
real server cannot produce on demand (tests/test_operator_faults.py, the retry test of
tests/test_operator_kube.py).

kmock 0.8 stores objects as plain dicts and merges patches; a real API server does more. Each extension
below mirrors one real behaviour (the comment says which); nothing else is changed:

- create: the server assigns `metadata.uid`, `resourceVersion`, `generation: 1`, `creationTimestamp`.
- update: `resourceVersion` moves on every real change; `generation` only when something other than
  metadata/status changes; a write that changes nothing is not stored and emits no watch event.
- status subresource: `PATCH …/status` changes only `.status`; the main endpoint ignores `.status`.
- server-side apply (`application/apply-patch+yaml`): creates a missing object; fields a manager applied
  before and leaves out now are removed unless another manager also set them (field ownership,
  simplified to leaf paths; lists are atomic). A merge patch takes ownership of the fields it sets.
- delete: finalizers hold the object with a `deletionTimestamp`; the garbage collector deletes
  dependents whose ownerReferences point to a deleted uid.
- faults: a test can make the next matching requests fail with a status (before any state change,
  as an API server that refuses a request), and can drop every open watch stream at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import itertools
import pathlib
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
import pytest
from kmock._internal import apps, enums, k8s, rendering

Path = tuple[str, ...]
ObjectKey = tuple[Any, str | None, str]

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
_DROP_WATCHES = "__modeldeploy_drop_watches__"


@attrs.define
class Fault:
    """Fail the next `times` requests whose method and path match, with `status`."""

    method: str
    path: re.Pattern[str]
    status: int
    times: int = 1
    hits: int = 0


@attrs.define(kw_only=True)
class ApiServerEmulator(k8s.KubernetesEmulator):
    _revisions: Iterator[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    # key → manager → leaf paths it set (server-side field ownership, simplified).
    _owners: dict[ObjectKey, dict[str, set[Path]]] = attrs.field(factory=dict, init=False)
    faults: list[Fault] = attrs.field(factory=list, init=False)
    served_faults: list[tuple[str, str, int]] = attrs.field(factory=list, init=False)
    # Writes the operator's own client made that changed stored state (a no-op write is not counted).
    operator_writes: int = attrs.field(default=0, init=False)
    crash_after: int | None = attrs.field(default=None, init=False)
    crashed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _persisted: int = attrs.field(default=0, init=False)

    # -- test controls

    def crash_operator_after(self, writes: int) -> None:
        """Stand-in for `kill -9` at an exact point: once the operator's client has made `writes` effective
        writes in all, every later request of it fails (nothing more reaches the store) and `crashed` is
        set, so the test can kill the process. kopf's own requests are not counted."""
        self.crash_after = writes
        self.crashed = asyncio.Event()
        if self.operator_writes >= writes:
            self.crashed.set()

    def fail(self, method: str, path: str, status: int, times: int = 1) -> Fault:
        fault = Fault(method.upper(), re.compile(path), status, times)
        self.faults.append(fault)
        return fault

    async def drop_watches(self) -> None:
        """End every open watch stream, as an API server does on restart or a load balancer on idle."""
        for bus in list(self._buses.values()):
            await bus.put({"type": _DROP_WATCHES, "object": {"metadata": {}}})

    def declare(
        self,
        resource: str,
        kind: str,
        namespaced: bool = True,
        subresources: tuple[str, ...] = (),
    ) -> None:
        info = self.resources[resource]
        info.kind = kind
        info.namespaced = namespaced
        info.singular = kind.lower()
        info.verbs = {"create", "delete", "get", "list", "patch", "update", "watch"}
        info.subresources = set(subresources)

    # -- request handling

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None:
            return await super()._handle(request)
        self._raise_injected_fault(request)
        ours = not request.headers.get("User-Agent", "").startswith("kopf")
        if ours and self.crashed.is_set() and self.crash_after is not None:
            raise k8s.KubernetesError(status=503, reason="Crashed", message="the operator is dead")
        async with self._lock:
            persisted = self._persisted
            if request.action == enums.action.CREATE:
                await self._create(request)
            elif request.action == enums.action.UPDATE and request.name is not None:
                await self._update(request)
            elif request.action == enums.action.DELETE and request.name is not None:
                await self._delete((request.resource, request.namespace, request.name))
            if ours and self._persisted > persisted:
                self.operator_writes += 1
                if self.crash_after is not None and self.operator_writes >= self.crash_after:
                    self.crashed.set()
        # State is settled; render the response from it. kmock matches every request against its
        # reaction DSL by scanning all past requests (quadratic over a run), so object requests go
        # straight to the emulator's own serving methods; discovery still goes through the DSL.
        servers: dict[enums.action, Any] = {
            enums.action.LIST: self._serve_list,
            enums.action.WATCH: self._serve_watch,
            enums.action.FETCH: self._serve_fetch,
            enums.action.CREATE: self._serve_create,
            enums.action.UPDATE: self._serve_update,
            enums.action.DELETE: self._serve_delete,
        }
        if request.resource.plural and request.action in servers:  # not discovery (`/apis/apps/v1`)
            return await rendering.Response(payload=servers[request.action])(request)
        return await apps.RawHandler._handle(self, request)

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        listing = await super()._serve_list(request)
        assert isinstance(listing, dict) and request.resource is not None
        # Real API server: `labelSelector` filters the items (equality terms `k=v`, comma-separated).
        selector = dict(
            term.split("=", 1) for term in request.params.get("labelSelector", "").split(",") if "=" in term
        )
        items = [
            item
            for item in listing["items"]
            if all((item.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in selector.items())
        ]
        # Real API server: a list has its own kind (`PodList`) and apiVersion.
        resource = request.resource
        kind = self.resources[resource].kind if resource in self.resources else None
        return {
            **listing,
            "apiVersion": f"{resource.group}/{resource.version}" if resource.group else resource.version,
            "kind": f"{kind or 'Object'}List",
            "items": items,
        }

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        async for item in super()._serve_watch(request):
            if isinstance(item, Mapping) and item.get("type") == _DROP_WATCHES:
                return
            yield item

    def _raise_injected_fault(self, request: rendering.Request) -> None:
        for fault in self.faults:
            if (
                fault.hits < fault.times
                and request.method == fault.method
                and fault.path.search(request.url.path)
            ):
                fault.hits += 1
                self.served_faults.append((fault.method, request.url.path, fault.status))
                raise k8s.KubernetesError(
                    status=fault.status, reason="InjectedFault", message="injected by the test"
                )

    async def _create(self, request: rendering.Request) -> None:
        data = dict(request.data or {})
        meta = dict(data.get("metadata") or {})
        assert request.resource is not None
        key: ObjectKey = (request.resource, request.namespace or meta.get("namespace"), meta.get("name", ""))
        existing = self._objects[key] if key in self._objects else None  # noqa: SIM401 (no .get)
        if existing is not None and not existing.deleted:
            raise k8s.KubernetesObjectConflictError()
        # Real API server: identity and bookkeeping fields are the server's, never the client's;
        # the namespace comes from the URL.
        if key[1] is not None:
            meta["namespace"] = key[1]
        resource = request.resource
        if "kind" not in data and resource in self.resources and self.resources[resource].kind:
            data["kind"] = self.resources[resource].kind
            data["apiVersion"] = (
                f"{resource.group}/{resource.version}" if resource.group else resource.version
            )
        meta.update(
            uid=str(uuid.uuid4()),
            resourceVersion=str(next(self._revisions)),
            generation=1,
            creationTimestamp=_now(),
        )
        data["metadata"] = meta
        if existing is None:
            self._objects[key] = data
        else:
            existing.create(data)
        self._persisted += 1
        self._owners[key] = {}
        await self._buses[request.resource].put({"type": "ADDED", "object": copy.deepcopy(data)})

    async def _update(self, request: rendering.Request) -> None:
        assert request.resource is not None
        key: ObjectKey = (request.resource, request.namespace, request.name or "")
        patch = request.data if isinstance(request.data, Mapping) else {}
        content_type = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
        manager = request.params.get("fieldManager", "")
        applying = content_type.startswith(APPLY_CONTENT_TYPE)
        current = self._objects[key] if key in self._objects else None  # noqa: SIM401 (no .get)
        if current is None or current.deleted:
            if not applying:
                raise k8s.KubernetesObjectNotFoundError()
            # Real API server: server-side apply of a missing object creates it.
            owners = {manager: set(_leaf_paths(_user_fields(patch)))}
            created = {**patch, "metadata": {**(patch.get("metadata") or {})}}
            created["metadata"]["managedFields"] = _managed_replicas(owners)
            await self._create(
                rendering.Request(
                    resource=request.resource,
                    namespace=request.namespace,
                    name=request.name,
                    data=created,
                    action=enums.action.CREATE,
                )
            )
            self._owners[key] = owners
            return
        before = current.raw
        wanted_version = (patch.get("metadata") or {}).get("resourceVersion") if patch else None
        if wanted_version and wanted_version != before.get("metadata", {}).get("resourceVersion"):
            # Real API server: a write carrying a resourceVersion is conditional (optimistic concurrency).
            raise k8s.KubernetesError(
                status=409,
                reason="Conflict",
                message="the object has been modified; please apply your"
                " changes to the latest version and try again",
            )
        if isinstance(request.data, list):
            after = self._json_patch(request, before)
        elif applying:
            patch = self._scope_to_subresource(request, patch)
            after = self._apply(key, before, patch, manager)
        else:
            patch = self._scope_to_subresource(request, patch)
            after = _merge(before, patch)
            # Real API server: an update (not an apply) takes ownership only of the values it changes.
            changed = [p for p in _leaf_paths(_user_fields(patch)) if _at(after, p) != _at(before, p)]
            self._take_ownership(key, changed, manager)
        meta = dict(after.get("metadata") or {})
        managed = _managed_replicas(self._owners.get(key, {}))
        if managed or "managedFields" in meta:
            meta["managedFields"] = managed
        after["metadata"] = meta
        if after == before:
            return  # Real API server: a no-op write is not persisted and emits no event.
        meta["resourceVersion"] = str(next(self._revisions))
        if _without_meta_and_status(after) != _without_meta_and_status(before):
            meta["generation"] = int(before.get("metadata", {}).get("generation", 1)) + 1
        after["metadata"] = meta
        current.create(after)
        self._persisted += 1
        await self._buses[request.resource].put({"type": "MODIFIED", "object": copy.deepcopy(after)})
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            await self._delete(key)

    def _json_patch(self, request: rendering.Request, before: Mapping[str, Any]) -> dict[str, Any]:
        """Real API server: RFC 6902 JSON patch; a failing `test` op refuses the whole patch (422)."""
        try:
            after: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(dict(before)), request.data)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
            raise k8s.KubernetesError(status=422, reason="Invalid", message=str(error)) from None
        scoped = self._scope_to_subresource(request, after)
        if request.subresource == "status":
            return {**before, "status": scoped.get("status")} if "status" in scoped else dict(before)
        return (
            {**scoped, "status": before["status"]}
            if "status" in before and "status" not in scoped
            else scoped
        )

    def _scope_to_subresource(self, request: rendering.Request, patch: Mapping[str, Any]) -> dict[str, Any]:
        assert request.resource is not None
        has_status = (
            request.resource in self.resources and "status" in self.resources[request.resource].subresources
        )
        if request.subresource == "status":
            # Real API server: the status subresource only writes `.status` (and nothing else).
            return {"status": patch.get("status")} if "status" in patch else {}
        if has_status:
            # Real API server: with a status subresource, the main endpoint ignores `.status`.
            return {k: v for k, v in patch.items() if k != "status"}
        return dict(patch)

    def _apply(
        self, key: ObjectKey, before: Mapping[str, Any], applied: Mapping[str, Any], manager: str
    ) -> dict[str, Any]:
        owners = self._owners.setdefault(key, {})
        new_paths = set(_leaf_paths(_user_fields(applied)))
        dropped = owners.get(manager, set()) - new_paths
        others = set().union(*(paths for name, paths in owners.items() if name != manager))
        result = copy.deepcopy(dict(before))
        for path in dropped:
            if path not in others:
                _remove(result, path)
        result = _merge(result, applied)
        self._take_ownership(key, new_paths, manager)
        return result

    def _take_ownership(self, key: ObjectKey, paths: Any, manager: str) -> None:
        owners = self._owners.setdefault(key, {})
        paths = set(paths)
        for name in owners:
            if name != manager:
                owners[name] -= paths
        owners.setdefault(manager, set()).update(paths)

    async def _delete(self, key: ObjectKey) -> None:
        if key not in self._objects or self._objects[key].deleted:
            raise k8s.KubernetesObjectNotFoundError()
        current = self._objects[key]
        meta = current.raw.get("metadata", {})
        if meta.get("finalizers"):
            # Real API server: finalizers hold the object until its controllers remove them.
            if not meta.get("deletionTimestamp"):
                current.patch({"metadata": {"deletionTimestamp": _now()}})
                await self._buses[key[0]].put({"type": "MODIFIED", "object": copy.deepcopy(current.raw)})
            return
        last = copy.deepcopy(current.raw)
        current.delete()
        self._persisted += 1
        self._owners.pop(key, None)
        await self._buses[key[0]].put({"type": "DELETED", "object": last})
        # Real garbage collector (background propagation): dependents of a deleted uid go too.
        uid = meta.get("uid")
        for other_key, other in list(self._objects.items()):
            if other.deleted:
                continue
            references = other.raw.get("metadata", {}).get("ownerReferences") or []
            if uid and any(ref.get("uid") == uid for ref in references):
                await self._delete(other_key)

    # -- test conveniences (not API behaviour)

    def live(self, resource: str, namespace: str | None = None) -> dict[str, dict[str, Any]]:
        """Live objects of `resource` by name (optionally in one namespace)."""
        wanted = kmock.resource(resource)
        return {
            name: obj.raw
            for (res, ns, name), obj in self._objects.items()
            if res == wanted and not obj.deleted and (namespace is None or ns == namespace)
        }

    def stored(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(resource), namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return self._objects[key].raw

    async def write_as_controller(
        self, resource: str, namespace: str | None, name: str, patch: Mapping[str, Any]
    ) -> None:
        """Write as another controller would (merge patch through the API semantics, emits events)."""
        res = kmock.resource(resource)
        async with self._lock:
            key: ObjectKey = (res, namespace, name)
            request = rendering.Request(
                resource=res,
                namespace=namespace,
                name=name,
                data={
                    **patch,
                    "metadata": {**patch.get("metadata", {}), "name": name, "namespace": namespace},
                },
                action=enums.action.CREATE,
                headers={"Content-Type": APPLY_CONTENT_TYPE},
                params={"fieldManager": "test-controller"},
            )
            if key not in self._objects or self._objects[key].deleted:
                await self._create(request)
            else:
                await self._update(
                    rendering.Request(
                        resource=res,
                        namespace=namespace,
                        name=name,
                        data=dict(patch),
                        action=enums.action.UPDATE,
                        headers={"Content-Type": "application/merge-patch+json"},
                        params={"fieldManager": "test-controller"},
                    )
                )
                if "status" in patch:
                    await self._update(
                        rendering.Request(
                            resource=res,
                            namespace=namespace,
                            name=name,
                            subresource="status",
                            data={"status": patch["status"]},
                            action=enums.action.UPDATE,
                            headers={"Content-Type": "application/merge-patch+json"},
                            params={"fieldManager": "test-controller"},
                        )
                    )


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _user_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Fields a manager can own: everything but the server's identity/bookkeeping metadata."""
    result = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        kept = {
            k: v for k, v in meta.items() if k in ("labels", "annotations", "ownerReferences", "finalizers")
        }
        result["metadata"] = kept
    return result


def _leaf_paths(obj: Mapping[str, Any], prefix: Path = ()) -> Iterator[Path]:
    for key, value in obj.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and value:
            yield from _leaf_paths(value, path)
        else:
            yield path


def _remove(obj: dict[str, Any], path: Path) -> None:
    node: Any = obj
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7386): dicts merge, `None` deletes, everything else replaces."""
    result = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = _merge(result[key], value)
        elif isinstance(value, Mapping):
            result[key] = _merge({}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _at(obj: Mapping[str, Any], path: Path) -> Any:
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _managed_replicas(owners: Mapping[str, set[Path]]) -> list[dict[str, Any]]:
    """Real API server: `metadata.managedFields` says which manager owns which field. Rendered here only
    for `spec.replicas` (the one field whose ownership the operator reads)."""
    return [
        {"manager": manager, "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
        for manager, paths in sorted(owners.items())
        if ("spec", "replicas") in paths
    ]


def _without_meta_and_status(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


# -- what a cluster with modeldeploy installed serves

CLUSTER_RESOURCES = (
    ("modeldeploy.io/v1alpha1/modeldeployments", "ModelDeployment", ("status",)),
    ("apps/v1/deployments", "Deployment", ("status", "scale")),
    ("batch/v1/jobs", "Job", ("status",)),
    ("v1/pods", "Pod", ("status",)),
    ("v1/services", "Service", ("status",)),
    ("v1/events", "Event", ()),
    ("v1/secrets", "Secret", ()),
    ("autoscaling/v2/horizontalpodautoscalers", "HorizontalPodAutoscaler", ("status",)),
    ("keda.sh/v1alpha1/scaledobjects", "ScaledObject", ("status",)),
    ("monitoring.coreos.com/v1/podmonitors", "PodMonitor", ()),
    ("gateway.networking.k8s.io/v1/httproutes", "HTTPRoute", ("status",)),
)


def declare_cluster(api: ApiServerEmulator) -> None:
    # The built-in resources of a k3s cluster (kopf waits for namespaces and CRDs to be served).
    api.resources.load_bundled()
    for resource, kind, subresources in CLUSTER_RESOURCES:
        api.declare(resource, kind, subresources=subresources)


@contextlib.asynccontextmanager
async def running_emulator() -> AsyncIterator[ApiServerEmulator]:
    """An emulated cluster on a free local port, serving what a cluster with modeldeploy installed serves."""
    async with ApiServerEmulator() as api, kmock.Server(api):
        declare_cluster(api)
        yield api


def use_kubeconfig(
    api: ApiServerEmulator, directory: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> pathlib.Path:
    """Write a kubeconfig for `api`; `$KUBECONFIG` points to it so kopf's login finds it too."""
    path = directory / "kubeconfig"
    path.write_text(kubeconfig_text(str(api.url)))
    monkeypatch.setenv("KUBECONFIG", str(path))
    # The client libraries read $KUBECONFIG once, at import time, into a module constant.
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.setattr("kubernetes.aio.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    return path


def kubeconfig_text(server: str) -> str:
    return (
        "apiVersion: v1\nkind: Config\ncurrent-context: emulator\n"
        f"clusters:\n- name: emulator\n  cluster:\n    server: {server}\n"
        "contexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: tester\n"
        "users:\n- name: tester\n  user:\n    token: test-token\n"
    )


# -- the cluster's own controllers, played by the test (the emulator has none)


@attrs.define
class ClusterControllers:
    """Job and Deployment controllers of an emulated cluster, reduced to what the operator observes.

    Jobs: a Job without a result completes and leaves a pod whose container terminated with `message`, as
    the kubelet reports `terminationMessagePath`. Deployments: every Deployment reports
    `availableReplicas == spec.replicas` (1 without replicas).
    """

    api: ApiServerEmulator
    message: str = '{"v": 1, "cached": false, "chosen": "int8-dynamic", "after": {"sizeBytes": 1000}}'
    tick_s: float = 0.02

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Play the controllers until the block ends."""
        task = asyncio.create_task(self.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        while True:
            await self.step()
            await asyncio.sleep(self.tick_s)

    async def step(self) -> None:
        for name, job in self.api.live("batch/v1/jobs").items():
            if not (job.get("status") or {}).get("conditions"):
                await self._finish_job(job["metadata"]["namespace"], name, job)
        for name, deployment in self.api.live("apps/v1/deployments").items():
            wanted = available = (deployment.get("spec") or {}).get("replicas", 1)
            status = deployment.get("status") or {}
            if status.get("availableReplicas") != available or status.get("replicas") != wanted:
                await self.api.write_as_controller(
                    "apps/v1/deployments",
                    deployment["metadata"]["namespace"],
                    name,
                    {
                        "status": {
                            "replicas": wanted,
                            "readyReplicas": available,
                            "availableReplicas": available,
                        }
                    },
                )

    async def _finish_job(self, namespace: str, name: str, job: Mapping[str, Any]) -> None:
        now = _now()
        await self.api.write_as_controller(
            "v1/pods",
            namespace,
            f"{name}-x1",
            {
                "metadata": {
                    "labels": {"batch.kubernetes.io/job-name": name},
                    "ownerReferences": [
                        {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"]}
                    ],
                },
                "status": {
                    "phase": "Succeeded",
                    "containerStatuses": [
                        {
                            "name": "optimize",
                            "state": {
                                "terminated": {"exitCode": 0, "message": self.message, "finishedAt": now}
                            },
                        }
                    ],
                },
            },
        )
        condition = {"type": "Complete", "status": "True", "lastTransitionTime": now}
        status = {"startTime": now, "completionTime": now, "succeeded": 1, "conditions": [condition]}
        await self.api.write_as_controller("batch/v1/jobs", namespace, name, {"status": status})
