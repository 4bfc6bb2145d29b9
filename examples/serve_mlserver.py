"""Serve an ONNX classifier with MLServer (Seldon) on this machine (127.0.0.1), over the
Open Inference Protocol (V2) REST API: ``GET /v2/health/ready``, ``GET /v2/models/NAME``,
``POST /v2/models/NAME/infer``. The model runs in a custom MLServer runtime (an ``MLModel``
around onnxruntime), in the server's process.

Run it with a Python that has mlserver and onnxruntime (``scripts/setup.sh`` makes
``.venv-mlserver``: MLServer 1.7 pins protobuf 6 and its own FastAPI)::

    .venv-mlserver/bin/python examples/serve_mlserver.py model.onnx --name digits --port 8090

then audit it: ``xrobust audit --endpoint http://127.0.0.1:8090/v2/models/digits
--endpoint-protocol v2 --data digits ...``. MLServer also opens a gRPC port
(``--grpc-port``, default the HTTP port + 1). ``--rows-log FILE`` appends the rows of each
request to FILE (the tests count them).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from mlserver import MLModel, MLServer
from mlserver.codecs import NumpyCodec
from mlserver.settings import ModelParameters, ModelSettings, Settings
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor

sys.path.insert(0, str(Path(__file__).resolve().parent))  # serving_onnx beside this file
from serving_onnx import OnnxRunner


class OnnxRuntime(MLModel):
    """An MLServer runtime answering with an ONNX file (``parameters.uri``) through
    onnxruntime; ``parameters.extra["rows_log"]`` logs the rows of each request."""

    async def load(self) -> bool:
        params = self.settings.parameters
        self._runner = OnnxRunner(params.uri, (params.extra or {}).get("rows_log"))
        inp, out = self._runner.tensors()
        self.inputs, self.outputs = [MetadataTensor(**inp)], [MetadataTensor(**out)]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        scores = self._runner(NumpyCodec.decode_input(payload.inputs[0]))
        name = self._runner.output.name
        return InferenceResponse(
            model_name=self.name, id=payload.id, outputs=[NumpyCodec.encode_output(name, scores)]
        )


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="the ONNX file (one float32 input, one output of scores)")
    p.add_argument("--name", default="model", help="the model's name in the URLs")
    p.add_argument("--port", type=int, default=8090, help="the HTTP port")
    p.add_argument("--grpc-port", type=int, help="the gRPC port (default: --port + 1)")
    p.add_argument("--host", default="127.0.0.1", help="the address to bind (this machine)")
    p.add_argument("--rows-log", help="append the rows of each request to this file")
    return p.parse_args()


def main() -> None:
    a = _args()
    settings = Settings(
        host=a.host, http_port=a.port, grpc_port=a.grpc_port or a.port + 1,
        metrics_endpoint=None, parallel_workers=0, debug=False,
    )  # fmt: skip
    model = ModelSettings(
        name=a.name,
        implementation=f"{Path(__file__).stem}.OnnxRuntime",  # imported by name by MLServer
        parameters=ModelParameters(
            uri=str(Path(a.model).resolve()), extra={"rows_log": a.rows_log}
        ),
    )
    asyncio.run(MLServer(settings).start([model]))


if __name__ == "__main__":
    main()
