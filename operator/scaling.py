"""What each autoscaling metric means to an HPA (a custom metric) and to KEDA (a PromQL query).

The PromQL selects the stable revision's Triton series by the labels the PodMonitor's relabelings add.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from modeldeploy.analysis import quote_label_value

Metric = Literal["queueTime", "p99Latency", "inferenceRate", "gpuUtilization"]


@dataclass(frozen=True)
class ScalingMetric:
    # Per-pod custom metric name served to the HPA by prometheus-adapter (rules in docs/api.md).
    hpa_metric_name: str
    # KEDA's prometheus trigger: `Value` compares the query's result with the target; `AverageValue`
    # divides it by the replica count first (right for a total rate, wrong for a latency).
    keda_query: str
    keda_metric_type: Literal["Value", "AverageValue"]


def promql_selector(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f"{name}={quote_label_value(value)}" for name, value in labels.items()) + "}"


def scaling_metric(metric: Metric, namespace: str, name: str, revision: str, model: str) -> ScalingMetric:
    pods = {"namespace": namespace, "modeldeploy_name": name, "modeldeploy_revision": revision}
    per_model = promql_selector({**pods, "model": model})
    if metric == "queueTime":
        return ScalingMetric(
            "modeldeploy_queue_time_ms",
            f"sum(rate(nv_inference_queue_duration_us{per_model}[1m])) / 1000"
            f" / clamp_min(sum(rate(nv_inference_request_success{per_model}[1m])), 0.001)",
            "Value",
        )
    if metric == "p99Latency":
        quantile = promql_selector({**pods, "model": model, "quantile": "0.99"})
        # Per-pod quantiles cannot be averaged: the worst pod is the honest figure.
        return ScalingMetric(
            "modeldeploy_p99_latency_ms", f"max(nv_inference_request_summary_us{quantile}) / 1000", "Value"
        )
    if metric == "inferenceRate":
        return ScalingMetric(
            "modeldeploy_inference_rate",
            f"sum(rate(nv_inference_request_success{per_model}[1m]))",
            "AverageValue",
        )
    # Triton reports GPU utilization per GPU (0..1), without a model label.
    return ScalingMetric(
        "modeldeploy_gpu_utilization_percent",
        f"avg(nv_gpu_utilization{promql_selector(pods)}) * 100",
        "Value",
    )
