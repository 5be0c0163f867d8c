#!/usr/bin/env bash
# The TensorRT path on a GPU machine: builds a TensorRT engine through the optimizer (gated by ONNX Runtime's
# TensorRT provider), builds one directly, and runs it with TensorRT's runtime (tests/test_tensorrt.py).
#
#   bash benchmarks/tensorrt_device.sh          # on a CUDA host; VENV=path to reuse a prepared environment
#
# It needs what the optimizer image's GPU_PACKAGES add (tensorrt-cu12, onnxruntime-gpu) plus torch for device
# buffers. A separate virtual environment (default .cache/trt-venv) keeps onnxruntime-gpu away from the CPU
# onnxruntime of .venv. Without a package index the environment must already hold them (exit 3 otherwise).
# Prints the GPU, the TensorRT version, and the tests' result; exit status is pytest's.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.cache/trt-venv}
command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: not a GPU machine" >&2; exit 3; }
nvidia-smi -L
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=strict \
    || { echo "cannot install the test dependencies here (no package index?)" >&2; exit 3; }
  "$VENV/bin/pip" uninstall -q -y onnxruntime
  "$VENV/bin/pip" install -q --disable-pip-version-check 'onnxruntime-gpu[cuda,cudnn]' tensorrt-cu12 torch \
    || { echo "cannot install tensorrt-cu12 / onnxruntime-gpu / torch here" >&2; exit 3; }
fi
# Never `python -m` from the repository root: the folder operator/ shadows the standard library.
(cd /tmp && "$VENV/bin/python" -c 'import tensorrt, onnxruntime as o; print("TensorRT", tensorrt.__version__, o.get_available_providers())')
"$VENV/bin/pytest" -q -rs -p no:cacheprovider tests/test_tensorrt.py
