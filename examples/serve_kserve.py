"""Serve an ONNX classifier with KServe's ModelServer on this machine (127.0.0.1), answering
both KServe protocols over REST:

* V1 (TF Serving JSON): ``POST /v1/models/NAME:predict`` with ``{"instances": [...]}``;
* V2 (the Open Inference Protocol): ``GET /v2/health/ready``, ``GET /v2/models/NAME``
  (metadata: the ONNX input's name and shape), ``POST /v2/models/NAME/infer``.

Run it with a Python that has kserve and onnxruntime (``scripts/setup.sh`` makes
``.venv-kserve``: KServe 0.21 pins protobuf 6, so it has its own venv)::

    .venv-kserve/bin/python examples/serve_kserve.py model.onnx --name digits --port 8080

then audit it: ``xrobust audit --endpoint http://127.0.0.1:8080/v2/models/digits
--endpoint-protocol v2 --data digits ...`` (or ``/v1/models/digits:predict`` for V1).
``--rows-log FILE`` appends the rows of each request to FILE (the tests count them);
``--verbose`` logs every request.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # serving_onnx beside this file


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="the ONNX file (one float32 input, one output of scores)")
    p.add_argument("--name", default="model", help="the model's name in the URLs")
    p.add_argument("--port", type=int, default=8080, help="the HTTP port")
    p.add_argument("--host", default="127.0.0.1", help="the address to bind (this machine)")
    p.add_argument("--rows-log", help="append the rows of each request to this file")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="log every request (KServe's access and latency logs)",
    )
    return p.parse_args()


def main() -> None:
    a = _args()
    sys.argv = sys.argv[:1]  # kserve parses the command line when imported
    import kserve
    import kserve.protocol.rest.server as rest
    from kserve import InferOutput, InferRequest, InferResponse
    from serving_onnx import OnnxRunner

    runner = OnnxRunner(a.model, a.rows_log)
    inp, out = runner.tensors()

    class OnnxModel(kserve.Model):
        def __init__(self) -> None:
            super().__init__(a.name)
            self.ready = True

        def get_input_types(self) -> list[dict]:
            return [inp]

        def get_output_types(self) -> list[dict]:
            return [out]

        def predict(self, payload, headers=None):
            if isinstance(payload, InferRequest):  # V2
                scores = runner(payload.inputs[0].as_numpy())
                t = InferOutput(name=out["name"], shape=list(scores.shape), datatype="FP32")
                binary = payload.use_binary_outputs  # the binary extension, when asked for
                t.set_data_from_numpy(scores, binary_data=binary)
                return InferResponse(
                    model_name=a.name, infer_outputs=[t], response_id=payload.id or "0",
                    use_binary_outputs=binary,
                )  # fmt: skip
            return {"predictions": runner(payload["instances"]).tolist()}  # V1

    init = rest.RESTServer.__init__

    def local_only(self, *args, **kwargs) -> None:  # KServe binds 0.0.0.0; bind --host
        init(self, *args, **kwargs)
        self.config.host = a.host

    rest.RESTServer.__init__ = local_only
    server = kserve.ModelServer(
        http_port=a.port, workers=1, enable_grpc=False, enable_docs_url=False, grace_period=2,
        enable_latency_logging=a.verbose,
    )  # fmt: skip
    # KServe 0.21 still answers with FastAPI's ORJSONResponse, which FastAPI 0.165 deprecates
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    if not a.verbose:  # three log lines a request otherwise (and their cost)
        for name in ("uvicorn.access", "kserve.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)
    server.start([OnnxModel()])


if __name__ == "__main__":
    main()
