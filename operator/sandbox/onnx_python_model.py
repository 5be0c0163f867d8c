"""A Triton python-backend model that runs an ONNX model with ONNX Runtime (copied as `<model>/1/model.py`
by `modeldeploy.sandbox.triton_onnx_adapter`).

It stands in for Triton's onnxruntime backend, which the pytriton build of tritonserver does not ship: the
same model file, the same config.pbtxt (batching, instances, warm-up), the same ONNX Runtime. Config
parameters (string values): `onnx_file` (next to this file, default model.onnx), `delay_ms` (sleep before
each answer: a slow revision on purpose, default 0), `threads` (ONNX Runtime intra-op threads, default 1).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]  # exists inside Triton only


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("threads", "1"))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(folder / parameters.get("onnx_file", "model.onnx")),
            options,
            providers=["CPUExecutionProvider"],
        )
        self.delay_s = float(parameters.get("delay_ms", "0")) / 1000
        self.ranks = {item.name: len(item.shape) for item in self.session.get_inputs()}
        self.outputs: list[str] = [output["name"] for output in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            if self.delay_s:
                time.sleep(self.delay_s)
            feed = {}
            for name, rank in self.ranks.items():
                array = pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                # A scalar is declared [1] in config.pbtxt (Triton needs a dimension).
                feed[name] = np.array(array.reshape(()) if rank == 0 else array, order="C")
            results = self.session.run(self.outputs, feed)
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(value))
                for name, value in zip(self.outputs, results, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(tensors))
        return responses
