"""Echo model for the real-Triton tests: latency and failures injected from config parameters.

Config parameters (string values): `delay_ms` sleeps before answering; `failure_share` (0..1) makes
`execute` raise for that share of requests, spread evenly (deterministic, not random); `fail_load: "true"`
makes loading fail. A request parameter `delay_ms` adds to the configured delay.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]  # exists inside Triton only


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        if parameters.get("fail_load") == "true":
            # Triton keeps the model UNAVAILABLE with this message as the reason.
            raise pb_utils.TritonModelException("injected load failure: weights are unreadable")
        self.delay_s = float(parameters.get("delay_ms", "0")) / 1000
        self.failure_share = float(parameters.get("failure_share", "0"))
        self.input_name: str = config["input"][0]["name"]
        self.output_name: str = config["output"][0]["name"]
        self.served = 0

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            extra_ms = float(json.loads(request.parameters() or "{}").get("delay_ms", 0))
            time.sleep(self.delay_s + extra_ms / 1000)
            self.served += 1
            # Fail whenever the number of failures due crosses an integer: an even, repeatable spread.
            due_now = math.floor(self.served * self.failure_share)
            if due_now > math.floor((self.served - 1) * self.failure_share):
                # An exception, not an error response: only this is counted as a failed request.
                raise pb_utils.TritonModelException(f"injected failure on request {self.served}")
            data = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, data)]))
        return responses
