"""Inputs for calibration, the accuracy gate and measurement: real (.npy/.npz) or generated, and augmented.

A sample is one model feed: `{input name: array}` with the batch dimension included (batch 1).
Real data matters: a gate on generated inputs cannot see what a model does to real images
(see docs/optimizer.md), so `--calibration` should point at a few real preprocessed inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modeldeploy.optimizer.errors import OptimizerInputError
from modeldeploy.optimizer.signature import ModelSignature, TensorSpec

Sample = dict[str, npt.NDArray[Any]]


def is_image_like(spec: TensorSpec) -> bool:
    """NCHW float input with 1 or 3 channels: flips, crops and noise keep such a sample plausible."""
    return len(spec.dims) == 4 and spec.dtype.startswith("float") and spec.dims[1] in (1, 3)


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


def _exact_tensor(array: npt.NDArray[Any], spec: TensorSpec, source: Path) -> npt.NDArray[Any]:
    if array.ndim != len(spec.dims) or any(
        static is not None and size != static for size, static in zip(array.shape, spec.dims, strict=True)
    ):
        expected = [-1 if dim is None else dim for dim in spec.dims]
        raise OptimizerInputError(
            f"{source}: input {spec.name!r} needs shape {expected} (-1: any), got {list(array.shape)}"
        )
    return np.array(array, dtype=spec.numpy_dtype, order="C")  # keeps a scalar 0-d


def load_calibration(directory: Path, signature: ModelSignature, limit: int) -> list[Sample]:
    """Samples from `.npy` files (single-input models: one item or a batch each) or `.npz` files (keys are
    input names).

    A file holding a batch contributes each item as its own sample. A model that does not batch (a first
    dimension that is not dynamic on every tensor: recurrent state [layers, batch, width], scalars) takes
    each file as one sample, exactly as stored.
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
        if not signature.has_batch_dimension:
            samples.append({s.name: _exact_tensor(arrays[s.name], s, path) for s in signature.inputs})
            if len(samples) >= limit:
                return samples
            continue
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


def split_held_out(samples: list[Sample], held_out: int, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(calibration, held-out), the held-out ones drawn at random with `seed` (recorded in the report), so
    the gate does not depend on how files happen to be named: it never judges on calibration inputs."""
    if len(samples) < 2:
        return samples, samples
    count = min(held_out, len(samples) // 2)
    order = np.random.default_rng(seed).permutation(len(samples))
    chosen = set(order[:count].tolist())
    return (
        [sample for index, sample in enumerate(samples) if index not in chosen],
        [sample for index, sample in enumerate(samples) if index in chosen],
    )


def batched(sample: Sample, batch_size: int) -> Sample:
    """`sample` repeated along the batch dimension (for measurement at a batch size)."""
    return {
        name: np.ascontiguousarray(np.repeat(array, batch_size, axis=0)) for name, array in sample.items()
    }


def batch_groups(samples: list[Sample], size: int) -> list[list[int]]:
    """Indices of samples with the same shapes, in chunks of `size` (a chunk of one is not a batch)."""
    by_shape: dict[tuple[tuple[str, tuple[int, ...]], ...], list[int]] = {}
    for index, sample in enumerate(samples):
        key = tuple(sorted((name, tuple(array.shape)) for name, array in sample.items()))
        by_shape.setdefault(key, []).append(index)
    groups: list[list[int]] = []
    for indices in by_shape.values():
        groups.extend(indices[start : start + size] for start in range(0, len(indices), max(size, 1)))
    return [group for group in groups if len(group) >= 2]


def stacked(samples: list[Sample]) -> Sample:
    """Batch-1 samples with the same shapes, as one batch."""
    return {
        name: np.ascontiguousarray(np.concatenate([sample[name] for sample in samples], axis=0))
        for name in samples[0]
    }
