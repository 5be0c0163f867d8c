"""The operator's own Prometheus metrics (prometheus-client), served on `--metrics-port` at /metrics.

A private registry keeps them apart from anything else in the process (and lets tests make fresh ones).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


@dataclass
class OperatorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.reconciles = Counter(
            "modeldeploy_reconciles",
            "Reconciles of a ModelDeployment, by result (ok, error, invalid).",
            ["result"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "modeldeploy_reconcile_duration_seconds",
            "Time to gather, decide and act for one ModelDeployment.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.rollouts = Counter(
            "modeldeploy_rollouts",
            "Finished rollouts of a new revision, by outcome (promoted, rolled_back).",
            ["outcome"],
            registry=self.registry,
        )
        self.rollbacks = Counter(
            "modeldeploy_rollbacks",
            "Rollbacks, by cause (AnalysisFailed, AnalysisError, ProgressDeadlineExceeded, Aborted).",
            ["cause"],
            registry=self.registry,
        )
        self.optimization_seconds = Histogram(
            "modeldeploy_optimization_duration_seconds",
            "Run time of finished optimization Jobs, by result (succeeded, failed).",
            ["result"],
            buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
            registry=self.registry,
        )
        self.phase = Gauge(
            "modeldeploy_phase",
            "1 for the phase each ModelDeployment is in.",
            ["namespace", "name", "phase"],
            registry=self.registry,
        )

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        start_http_server(port, addr=address, registry=self.registry)

    def set_phase(self, namespace: str, name: str, phase: str, phases: list[str]) -> None:
        for candidate in phases:
            self.phase.labels(namespace, name, candidate).set(1 if candidate == phase else 0)

    def forget(self, namespace: str, name: str, phases: list[str]) -> None:
        for candidate in phases:
            with contextlib.suppress(KeyError):
                self.phase.remove(namespace, name, candidate)
