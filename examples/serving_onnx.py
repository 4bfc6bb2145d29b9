"""The ONNX model behind examples/serve_kserve.py and examples/serve_mlserver.py: one
onnxruntime session (one thread, so a shared CPU is not oversubscribed), its tensors as the
Open Inference Protocol's metadata describes them, and an optional log of the rows of each
request (one number a line), which the tests compare with the rows xrobust says it sent.

Needs only numpy and onnxruntime (the servers' venvs have both; xrobust is not needed).
"""

from __future__ import annotations

import threading

import numpy as np
import onnxruntime as ort


class OnnxRunner:
    """``runner(batch) -> scores`` for a float32 ONNX classifier with one input and output."""

    def __init__(self, path: str, rows_log: str | None = None) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input, self.output = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.rows_log = rows_log
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        scores = self.session.run([self.output.name], {self.input.name: batch})[0]
        if self.rows_log:
            with self._lock, open(self.rows_log, "a") as f:
                f.write(f"{len(batch)}\n")
        return np.asarray(scores, dtype=np.float32)

    def tensors(self) -> tuple[dict, dict]:
        """The input and output as V2 metadata: name, datatype FP32, shape (-1: any)."""

        def info(t: ort.NodeArg) -> dict:
            shape = [d if isinstance(d, int) else -1 for d in t.shape]
            return {"name": t.name, "datatype": "FP32", "shape": shape}

        return info(self.input), info(self.output)
