"""Inputs for calibration, the accuracy gate and measurement: real (.npy/.npz) or generated, and augmented.

A sample is one model feed: `{input name: array}` with the batch dimension included (batch 1).
Real data matters: a gate on generated inputs cannot see what a model does to real images
(see docs/optimizer.md), so `--calibration` should point at a few real preprocessed inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from modeldeploy.optimizer.errors import OptimizerInputError
from modeldeploy.optimizer.signature import ModelSignature, TensorSpec

Sample = dict[str, npt.NDArray[Any]]

# Tried in order for dynamic non-batch dimensions until the model runs (PP-OCRv4 det needs multiples of 32).
PROBE_SIZES = (64, 32, 96, 128, 224, 48, 16, 8, 1)


def is_image_like(spec: TensorSpec) -> bool:
    """NCHW float input with 1 or 3 channels: flips, crops and noise keep such a sample plausible."""
    return len(spec.dims) == 4 and spec.dtype.startswith("float") and spec.dims[1] in (1, 3)


def concrete_shape(spec: TensorSpec, fill: int, overrides: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The shape of one batch-1 sample: `overrides` first, then static dims, dynamic ones set to `fill`."""
    if spec.name in overrides:
        shape = overrides[spec.name]
        if len(shape) != len(spec.dims):
            raise OptimizerInputError(
                f"--input-shape {spec.name}: model input has rank {len(spec.dims)}, got {len(shape)} dims"
            )
        for index, (given, static) in enumerate(zip(shape, spec.dims, strict=True)):
            if static is not None and given != static:
                raise OptimizerInputError(
                    f"--input-shape {spec.name}: dim {index} is fixed to {static} in the model, got {given}"
                )
        return shape
    return tuple((1 if index == 0 else fill) if dim is None else dim for index, dim in enumerate(spec.dims))


def index_bounds(model: onnx.ModelProto) -> dict[str, int]:
    """Upper bounds for integer inputs used as Gather indices into a constant table (token ids)."""
    tables = {init.name: init.dims[0] for init in model.graph.initializer if init.dims}
    bounds: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in tables:
            bounds[node.input[1]] = min(bounds.get(node.input[1], 1 << 62), tables[node.input[0]])
    return bounds


def _generated_tensor(
    spec: TensorSpec, shape: tuple[int, ...], rng: np.random.Generator, bound: int | None
) -> npt.NDArray[Any]:
    if spec.dtype == "bool":
        return rng.random(shape) < 0.5
    if not spec.dtype.startswith("float"):
        high = bound if bound is not None else 2
        return rng.integers(0, max(high, 1), size=shape).astype(spec.numpy_dtype)
    if is_image_like(spec) and shape[2] >= 8 and shape[3] >= 8:
        # Spatially correlated blobs plus a little noise in [-1, 1]: closer to images than white noise.
        coarse = rng.uniform(-1.0, 1.0, size=(*shape[:2], max(shape[2] // 8, 1), max(shape[3] // 8, 1)))
        rows = np.minimum(np.arange(shape[2]) * coarse.shape[2] // shape[2], coarse.shape[2] - 1)
        cols = np.minimum(np.arange(shape[3]) * coarse.shape[3] // shape[3], coarse.shape[3] - 1)
        image = coarse[:, :, rows][:, :, :, cols] + rng.normal(0.0, 0.1, size=shape)
        return np.clip(image, -1.0, 1.0).astype(spec.numpy_dtype)
    return rng.standard_normal(shape).astype(spec.numpy_dtype)


def generate(
    signature: ModelSignature,
    shapes: Mapping[str, tuple[int, ...]],
    count: int,
    seed: int,
    bounds: Mapping[str, int] | None = None,
) -> list[Sample]:
    rng = np.random.default_rng(seed)
    bounds = bounds or {}
    return [
        {
            spec.name: _generated_tensor(spec, shapes[spec.name], rng, bounds.get(spec.name))
            for spec in signature.inputs
        }
        for _ in range(count)
    ]


def probe_shapes(
    signature: ModelSignature,
    overrides: Mapping[str, tuple[int, ...]],
    runs: Callable[[Sample], bool],
    bounds: Mapping[str, int] | None = None,
) -> dict[str, tuple[int, ...]]:
    """Concrete batch-1 shapes the model accepts: overrides as given, dynamic dims probed from PROBE_SIZES."""
    tried: list[str] = []
    for fill in PROBE_SIZES:
        shapes = {spec.name: concrete_shape(spec, fill, overrides) for spec in signature.inputs}
        if runs(generate(signature, shapes, 1, seed=0, bounds=bounds)[0]):
            return shapes
        tried.append(str(shapes))
        if all(None not in spec.dims[1:] or spec.name in overrides for spec in signature.inputs):
            break  # nothing dynamic to vary
    raise OptimizerInputError(
        "the model does not run on any input shape tried; pass --input-shape NAME=D1,D2,... "
        f"(tried {'; '.join(tried[:3])})"
    )


def _as_sample_tensor(array: npt.NDArray[Any], spec: TensorSpec, source: Path) -> npt.NDArray[Any]:
    if array.ndim == len(spec.dims) - 1:
        array = array[np.newaxis]  # a single item without its batch dimension
    if array.ndim != len(spec.dims):
        raise OptimizerInputError(
            f"{source}: input {spec.name!r} needs rank {len(spec.dims)} "
            f"(or {len(spec.dims) - 1} without batch), got shape {array.shape}"
        )
    for index, (size, static) in enumerate(zip(array.shape, spec.dims, strict=True)):
        if static is not None and size != static and index > 0:
            raise OptimizerInputError(
                f"{source}: input {spec.name!r} dim {index} must be {static}, got shape {array.shape}"
            )
    if array.dtype.kind != spec.numpy_dtype.kind and not (
        array.dtype.kind in "iu" and spec.numpy_dtype.kind in "iu"
    ):
        raise OptimizerInputError(f"{source}: input {spec.name!r} needs {spec.dtype}, got {array.dtype}")
    return np.ascontiguousarray(array.astype(spec.numpy_dtype))


def load_calibration(directory: Path, signature: ModelSignature, limit: int) -> list[Sample]:
    """Samples from `.npy` files (single-input models: one item or a batch each) or `.npz` files (keys are
    input names).

    A file holding a batch contributes each item as its own sample.
    """
    files = (
        [directory]
        if directory.is_file()
        else sorted(path for path in directory.iterdir() if path.suffix in (".npy", ".npz"))
    )
    if not files:
        raise OptimizerInputError(f"{directory}: calibration data must be .npy or .npz files; none found")
    samples: list[Sample] = []
    for path in files:
        try:
            loaded = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise OptimizerInputError(f"{path}: not a readable .npy/.npz file: {error}") from None
        if isinstance(loaded, np.ndarray):
            if len(signature.inputs) != 1:
                raise OptimizerInputError(
                    f"{path}: the model has {len(signature.inputs)} inputs; use .npz files keyed by input"
                )
            arrays = {signature.inputs[0].name: loaded}
        else:
            with loaded:
                missing = [spec.name for spec in signature.inputs if spec.name not in loaded.files]
                if missing:
                    raise OptimizerInputError(f"{path}: missing arrays for inputs {missing}")
                arrays = {spec.name: loaded[spec.name] for spec in signature.inputs}
        batch = {spec.name: _as_sample_tensor(arrays[spec.name], spec, path) for spec in signature.inputs}
        items = {len(array) for array in batch.values()}
        if len(items) != 1:
            raise OptimizerInputError(f"{path}: inputs disagree on the batch size: {sorted(items)}")
        for index in range(items.pop()):
            samples.append({name: array[index : index + 1] for name, array in batch.items()})
            if len(samples) >= limit:
                return samples
    return samples


def _crop_resized(image: npt.NDArray[Any], rng: np.random.Generator) -> npt.NDArray[Any]:
    """A random crop of ~85% of the height and width, stretched back to the original size (nearest)."""
    height, width = image.shape[-2:]
    crop_h, crop_w = max(int(height * 0.85), 1), max(int(width * 0.85), 1)
    top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    rows = top + np.arange(height) * crop_h // height
    cols = left + np.arange(width) * crop_w // width
    return image[..., rows, :][..., cols]


def augment(samples: list[Sample], signature: ModelSignature, count: int, seed: int) -> list[Sample]:
    """`count` extra samples derived from `samples`: flips, crops and light noise on image-like inputs.

    Inputs that are not image-like are copied unchanged, so models without images gain nothing here.
    """
    if not samples or not any(is_image_like(spec) for spec in signature.inputs):
        return []
    rng = np.random.default_rng(seed)
    extra: list[Sample] = []
    for index in range(count):
        source = samples[index % len(samples)]
        variant: Sample = {}
        for spec in signature.inputs:
            array = source[spec.name]
            if is_image_like(spec):
                kind = index % 3
                if kind == 0:
                    array = array[..., ::-1]
                elif kind == 1:
                    array = _crop_resized(array, rng)
                else:
                    spread = float(np.std(array)) or 1.0
                    array = array + rng.normal(0.0, 0.05 * spread, size=array.shape)
                array = np.ascontiguousarray(array.astype(spec.numpy_dtype))
            variant[spec.name] = array
        extra.append(variant)
    return extra


def split_held_out(samples: list[Sample], held_out: int) -> tuple[list[Sample], list[Sample]]:
    """(calibration, held-out): the gate never judges on the inputs a quantizer calibrated on."""
    if len(samples) < 2:
        return samples, samples
    count = min(held_out, len(samples) // 2)
    return samples[:-count], samples[-count:]


def batched(sample: Sample, batch_size: int) -> Sample:
    """`sample` repeated along the batch dimension (for measurement at a batch size)."""
    return {
        name: np.ascontiguousarray(np.repeat(array, batch_size, axis=0)) for name, array in sample.items()
    }
