"""Triton's `config.pbtxt` for the shipped model, built as tritonclient's `ModelConfig` protobuf message,
so what is written always parses as the server's schema."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from modeldeploy.optimizer.signature import ModelSignature, TensorSpec

PLATFORMS = {"onnx": "onnxruntime_onnx", "plan": "tensorrt_plan"}


@dataclass(frozen=True)
class ServingConfig:
    max_batch_size: int  # 0: the model does not batch (or batching is off)
    dynamic_batching: bool
    preferred_batch_sizes: Sequence[int]
    max_queue_delay_microseconds: int
    instance_kind: str  # KIND_AUTO | KIND_GPU | KIND_CPU
    instance_count: int
    # Concrete batch-1 input shapes for model_warmup; None: no warmup.
    warmup_shapes: Mapping[str, tuple[int, ...]] | None


def _dims(spec: TensorSpec, batching: bool) -> list[int]:
    dims = spec.dims[1:] if batching else spec.dims
    # Triton serves no scalar in a model that does not batch: the shipped model takes and gives [1] instead
    # (candidates.scalars_as_one_element).
    return [-1 if dim is None else dim for dim in dims] or [1]


def build_config(
    name: str, model_format: str, signature: ModelSignature, serving: ServingConfig
) -> pb.ModelConfig:
    batching = serving.max_batch_size > 0
    config = pb.ModelConfig(
        name=name, platform=PLATFORMS[model_format], max_batch_size=serving.max_batch_size
    )
    for spec in signature.inputs:
        config.input.append(
            pb.ModelInput(
                name=spec.name,
                data_type=pb.DataType.Value(spec.triton_type),
                dims=_dims(spec, batching),
            )
        )
    for spec in signature.outputs:
        config.output.append(
            pb.ModelOutput(
                name=spec.name,
                data_type=pb.DataType.Value(spec.triton_type),
                dims=_dims(spec, batching),
            )
        )
    config.instance_group.append(
        pb.ModelInstanceGroup(
            kind=pb.ModelInstanceGroup.Kind.Value(serving.instance_kind), count=serving.instance_count
        )
    )
    if batching and serving.dynamic_batching:
        config.dynamic_batching.CopyFrom(
            pb.ModelDynamicBatching(
                preferred_batch_size=list(serving.preferred_batch_sizes),
                max_queue_delay_microseconds=serving.max_queue_delay_microseconds,
            )
        )
    if serving.warmup_shapes is not None:
        warmup = pb.ModelWarmup(name="sample", batch_size=1)
        for spec in signature.inputs:
            shape = serving.warmup_shapes[spec.name]
            # Triton's random_data fails to load a model with integer inputs (its random bytes are not
            # valid ids): those get zeros (a padding token, an empty mask); floats get random data.
            source = {"random_data": True} if spec.dtype.startswith("float") else {"zero_data": True}
            warmup.inputs[spec.name].CopyFrom(
                pb.ModelWarmup.Input(
                    data_type=pb.DataType.Value(spec.triton_type),
                    dims=list(shape[1:] if batching else shape) or [1],
                    **source,
                )
            )
        config.model_warmup.append(warmup)
    return config


def render_config(config: pb.ModelConfig) -> str:
    return str(text_format.MessageToString(config))
