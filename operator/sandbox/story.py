"""The sandbox's story on a real model (PP-OCR's text-direction classifier, shipped by PyPI
rapidocr-onnxruntime): revision 1 (no quantization) is optimized and goes Ready; revision 2 (dynamic int8)
runs through the canary steps and is promoted on the analysis figures; revision 3 (a new upload of the same
model) is served with a delay the sandbox injects in its serving adapter, on purpose, and is rolled back
with the analysis' reason. (The delay is keyed by revision, not by `serving` fields: the operator renders
the stable Deployment from the current spec's `serving` too, so a serving-side marker would slow both.)
The rollout settings here are short on purpose (10 s steps); the defaults of the API are untouched."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modeldeploy.prometheus import query_number
from modeldeploy.revision import compute_revision
from modeldeploy.sandbox.load import LoadGenerator
from modeldeploy.sandbox.stack import Say, Stack
from modeldeploy.sandbox.view import SummaryRow, changes, summary_table
from modeldeploy.spec import parse_spec

NAMESPACE = "sandbox"
NAME = "ocr"
MODEL = "ocr_cls"
CLAIM = "model-store"
MODEL_PATH = "uploads/ocr-cls.onnx"
MODEL_V3_PATH = "uploads/ocr-cls-v3.onnx"  # revision 3: the same bytes uploaded again (a new revision)
INPUT_SHAPE = (1, 3, 48, 192)  # the classifier's own input size (PP-OCR crops text lines to 48x192)
MD_PATH = f"/apis/modeldeploy.io/v1alpha1/namespaces/{NAMESPACE}/modeldeployments/{NAME}"


class StoryError(Exception):
    """The story did not go as told (with what the cluster said)."""


@dataclass(frozen=True)
class StoryOptions:
    interval: str = "10s"
    steps: tuple[int, ...] = (25, 50)
    replicas: int = 2
    rate_per_s: float = 25.0
    delay_ms: float = 150.0
    max_latency_ratio: float = 4.0
    min_requests: int = 20
    failure_threshold: int = 2
    until: str = "rollback"  # or "ready" (revision 1 only), "promoted" (revisions 1 and 2)
    phase_timeout_s: float = 240.0


@dataclass
class Revision:
    number: int
    change: str
    name: str = ""
    optimization: dict[str, Any] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    outcome: str = ""
    reason: str = ""


def classifier_model() -> Path:
    import rapidocr_onnxruntime  # noqa: PLC0415  # a real part from PyPI

    return Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"


def manifest(
    options: StoryOptions,
    quantization: str,
    model_path: str = MODEL_PATH,
    prometheus_url: str = "http://127.0.0.1:9090",
) -> dict[str, Any]:
    small = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": MODEL, "uri": f"pvc://{CLAIM}/{model_path}"},
            "optimization": {"quantization": quantization, "resources": small, "tolerations": []},
            "serving": {
                "replicas": options.replicas,
                "maxBatchSize": 8,
                "instanceGroup": {"kind": "cpu", "count": 1},
                # Triton runs a random sample through the model before the pod is Ready: a fresh canary's
                # first requests are then not cold (its p99 is compared with warm stable pods).
                "warmup": True,
                "resources": small,
                "tolerations": [],
            },
            "storage": {"uri": f"pvc://{CLAIM}/repositories"},
            "rollout": {
                "steps": list(options.steps),
                "interval": options.interval,
                "progressDeadline": "5m",
                "analysis": {
                    "maxErrorRate": 0.01,
                    "maxLatencyRatio": options.max_latency_ratio,
                    "minRequests": options.min_requests,
                    "failureThreshold": options.failure_threshold,
                },
            },
            "monitoring": {"prometheusUrl": prometheus_url},
        },
    }


@dataclass
class Story:
    stack: Stack
    options: StoryOptions
    say: Say
    revisions: dict[str, Revision] = field(default_factory=dict)
    load: LoadGenerator | None = None
    _status: dict[str, Any] = field(default_factory=dict)

    def run(self) -> list[SummaryRow]:
        plane = self.stack.plane
        assert plane is not None
        model = self.stack.pvc_root / CLAIM / MODEL_PATH
        model.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(classifier_model(), model)
        shutil.copyfile(classifier_model(), self.stack.pvc_root / CLAIM / MODEL_V3_PATH)
        self.say(f"model: PP-OCR text-direction classifier (rapidocr-onnxruntime), {model.stat().st_size} B")
        first = Revision(1, "no quantization (quantization: none)")
        self._apply(manifest(self.options, "none", prometheus_url=self._prometheus_url), first, create=True)
        self._follow(first, lambda s: s.get("phase") == "Ready" and bool(s.get("stableRevision")))
        first.outcome, first.reason = "stable", "first revision: Ready once its Triton pods were"
        if self.options.until == "ready":
            return [self._row(first, "")]
        pod_monitor = self.stack.get(
            f"/apis/monitoring.coreos.com/v1/namespaces/{NAMESPACE}/podmonitors/{NAME}"
        )
        if pod_monitor is None:
            raise StoryError("the operator wrote no PodMonitor")
        url = self.stack.start_prometheus(pod_monitor)
        self.say(
            f"prometheus {url}: pods discovered from the API server, relabeled as PodMonitor {NAME} says"
        )
        self.say("           (sandbox: scraped every 2 s, not 15 s; pod IP 10.A.B.C scraped at 127.A.B.C)")
        self.load = LoadGenerator(
            plane.client, NAMESPACE, NAME, MODEL, self.options.rate_per_s, shapes={"x": INPUT_SHAPE}
        ).start()
        self.say(
            f"load       {self.options.rate_per_s:g} requests/s over the ready endpoints of Service {NAME}"
        )

        second = Revision(2, "dynamic int8 (quantization: int8-dynamic)")
        self._apply(manifest(self.options, "int8-dynamic", prometheus_url=self._prometheus_url), second)
        self._follow(second, lambda s: s.get("stableRevision") == second.name or _rolled_back(s, second.name))
        second.outcome = "promoted" if self._status.get("stableRevision") == second.name else "rolled back"
        if self.options.until == "promoted":
            return self._finish([first, second], url)

        third = Revision(3, f"new upload of the model, slowed {self.options.delay_ms:g} ms on purpose")
        body = manifest(self.options, "int8-dynamic", MODEL_V3_PATH, self._prometheus_url)
        slow = compute_revision(parse_spec(body["spec"]))
        assert self.stack.pods is not None
        self.stack.pods.slow(slow, self.options.delay_ms)
        self.say(
            f"revision 3 ({slow}) is made slow on purpose: the sandbox's serving adapter answers each of its"
            f" requests {self.options.delay_ms:g} ms later"
        )
        self._apply(body, third)
        self._follow(third, lambda s: s.get("stableRevision") == third.name or _rolled_back(s, third.name))
        third.outcome = "promoted" if self._status.get("stableRevision") == third.name else "rolled back"
        third.reason = (self._status.get("lastRollback") or {}).get("reason", "")
        return self._finish([first, second, third], url)

    def _finish(self, revisions: list[Revision], url: str) -> list[SummaryRow]:
        assert self.load is not None
        self.load.stop()
        time.sleep(3)  # one more scrape after the last request
        return [self._row(revision, url) for revision in revisions]

    @property
    def _prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.stack.prometheus_port}"

    def _apply(self, body: dict[str, Any], revision: Revision, *, create: bool = False) -> None:
        plane = self.stack.plane
        assert plane is not None
        self.say(f"-- revision {revision.number}: {revision.change}")
        self.revisions[str(revision.number)] = revision
        if create:
            plane.request("POST", MD_PATH.rsplit("/", 1)[0], body)
        else:
            plane.request(
                "PATCH", MD_PATH, {"spec": body["spec"]}, content_type="application/merge-patch+json"
            )

    def _follow(self, revision: Revision, done: Callable[[Mapping[str, Any]], bool]) -> None:
        deadline = time.monotonic() + self.options.phase_timeout_s
        generation = (self.stack.get(MD_PATH) or {}).get("metadata", {}).get("generation")
        while True:
            body = self.stack.get(MD_PATH) or {}
            status = body.get("status") or {}
            fresh = status.get("observedGeneration") == generation
            optimization = status.get("optimization") or {}
            if fresh and optimization.get("revision") and not revision.name:
                revision.name = str(optimization["revision"])
            for line in changes(self._status, status):
                self.say(line)
            self._record(revision, status)
            self._status = status
            if fresh and revision.name and done(status):
                return
            if status.get("phase") == "Failed":
                raise StoryError(f"revision {revision.number} failed: {status.get('conditions')}")
            if time.monotonic() > deadline:
                raise StoryError(f"revision {revision.number}: timed out in phase {status.get('phase')}")
            time.sleep(0.5)

    def _record(self, revision: Revision, status: Mapping[str, Any]) -> None:
        optimization = status.get("optimization") or {}
        if revision.name and optimization.get("revision") == revision.name:
            revision.optimization = dict(optimization)
        analysis = status.get("analysis") or {}
        previous = (self._status.get("analysis") or {}).get("time")
        if revision.name and analysis.get("time") and analysis.get("time") != previous:
            revision.verdicts.append(dict(analysis))
            if analysis.get("verdict") == "pass" and status.get("stableRevision") == revision.name:
                revision.reason = str(analysis.get("reason", ""))

    def _row(self, revision: Revision, prometheus_url: str) -> SummaryRow:
        prefix = f"{NAME}-{revision.name}-"
        sent = sum(n for pod, n in (self.load.sent if self.load else {}).items() if pod.startswith(prefix))
        failed = sum(
            n for pod, n in (self.load.failed if self.load else {}).items() if pod.startswith(prefix)
        )
        selector = f'namespace="{NAMESPACE}",modeldeploy_revision="{revision.name}"'
        query = f"sum(max_over_time(nv_inference_request_success{{{selector}}}[30m]))"
        # Each pod's counter only grows while it lives: its maximum is what it served (the smoke check's
        # one inference included).
        scraped = query_number(prometheus_url, query) if prometheus_url else None
        before, after = revision.optimization.get("before") or {}, revision.optimization.get("after") or {}
        chosen = revision.optimization.get("chosen", "?")
        optimizer = f"{chosen} {before.get('sizeBytes', '?')}->{after.get('sizeBytes', '?')} B"
        return SummaryRow(
            revision=f"{revision.number} {revision.name}",
            change=revision.change,
            optimizer=optimizer,
            outcome=revision.outcome,
            verdicts=", ".join(str(v.get("verdict")) for v in revision.verdicts) or "-",
            sent=sent,
            failed=failed,
            scraped=scraped,
        )

    def report_json(self, revision: Revision) -> dict[str, Any]:
        """The optimizer's report.json of a revision, as the Job wrote it to the claim."""
        path = self.stack.pvc_root / CLAIM / "repositories" / NAMESPACE / NAME / revision.name / "report.json"
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded

    def result(self, rows: list[SummaryRow]) -> dict[str, Any]:
        return {
            "revisions": [asdict(revision) for revision in self.revisions.values()],
            "summary": [asdict(row) for row in rows],
            "table": summary_table(rows),
        }


def _rolled_back(status: Mapping[str, Any], revision: str) -> bool:
    return (status.get("lastRollback") or {}).get("revision") == revision
