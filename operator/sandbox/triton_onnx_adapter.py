"""Turn an optimizer output repository (NAME/config.pbtxt, NAME/1/model.onnx) into one that the pytriton
build of tritonserver (python backend only) loads: the same config.pbtxt fields (inputs, outputs,
max_batch_size, dynamic_batching, instance_group, model_warmup), `backend: "python"` instead of the ONNX
Runtime platform, and `onnx_python_model.py` as `1/model.py` running the model file with ONNX Runtime.

Stands in for Triton's onnxruntime backend only: what is checked through it is the config (does Triton
accept it, batch with it, warm up with it) and the model file (does it answer at batch 1 and max batch).
`delay_ms` makes every answer slower on purpose (a slow canary for the sandbox checks).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

MODEL_CODE = Path(__file__).with_name("onnx_python_model.py")
ONNX_PLATFORMS = ("onnxruntime_onnx", "")


def python_backend_config(
    config_text: str, name: str, *, delay_ms: float = 0.0, cpu_only: bool = True
) -> pb.ModelConfig:
    """The optimizer's config.pbtxt as a python-backend config served under `name`."""
    config = text_format.Parse(config_text, pb.ModelConfig())
    if config.platform not in ONNX_PLATFORMS or config.backend not in ("", "onnxruntime"):
        raise ValueError(f"{name}: only ONNX models can be adapted (platform {config.platform!r})")
    config.name = name
    config.platform = ""
    config.backend = "python"
    if cpu_only:
        for group in config.instance_group:
            if group.kind in (pb.ModelInstanceGroup.KIND_GPU, pb.ModelInstanceGroup.KIND_AUTO):
                group.kind = pb.ModelInstanceGroup.KIND_CPU
                del group.gpus[:]
    config.parameters["delay_ms"].string_value = f"{delay_ms:g}"
    config.parameters["onnx_file"].string_value = "model.onnx"
    return config


def adapt_model(
    source: Path, target_repository: Path, name: str, *, delay_ms: float = 0.0, cpu_only: bool = True
) -> Path:
    """`source` is one model folder (config.pbtxt, 1/model.onnx and any external data); writes
    `target_repository/name` and returns it."""
    config = python_backend_config(
        (source / "config.pbtxt").read_text(encoding="utf-8"), name, delay_ms=delay_ms, cpu_only=cpu_only
    )
    versions = sorted(path for path in source.iterdir() if path.is_dir() and path.name.isdigit())
    if not versions or not (versions[-1] / "model.onnx").is_file():
        raise ValueError(f"{source}: no <version>/model.onnx")
    target = target_repository / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(versions[-1], target / versions[-1].name)
    shutil.copyfile(MODEL_CODE, target / versions[-1].name / "model.py")
    (target / "config.pbtxt").write_text(text_format.MessageToString(config), encoding="utf-8")
    return target


def adapt_repository(
    source: Path, target_repository: Path, *, prefix: str = "", delay_ms: float = 0.0, cpu_only: bool = True
) -> list[str]:
    """Every model folder of an optimizer output repository (those holding a config.pbtxt), adapted under
    `prefix + its name`. Returns the served names."""
    served = []
    for folder in sorted(path for path in source.iterdir() if (path / "config.pbtxt").is_file()):
        name = f"{prefix}{folder.name}"
        adapt_model(folder, target_repository, name, delay_ms=delay_ms, cpu_only=cpu_only)
        served.append(name)
    return served
