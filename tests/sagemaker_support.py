"""Support for the SageMaker tests: fake AWS credentials in a sealed environment, a small
ONNX model of ours, and the local signing server of ``examples/sagemaker_local.py``.

The environment holds only made-up credentials (access key id, secret key, session token),
a region, empty AWS config and credentials files (the user's home is never read) and no
instance metadata lookups, so that boto3's standard chain finds exactly these.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REGION = "eu-west-1"
NAME = "digits-endpoint"
#: made-up credentials; each is long and distinctive so that any echo of one is found.
KEY_ID = "AKIAXROBUSTFAKE7Q2Z"
SECRET = "xrobust/Fake+Secret/Key/9f8e7d6c5b4a3210zyxw"
TOKEN = "FwoGZXIvYXdzEXROBUSTfakeSessionToken/+abc123=="
CREDENTIALS = (KEY_ID, SECRET, TOKEN)

_AWS_VARS = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_CA_BUNDLE",
)  # fmt: skip


def sealed_aws_env(monkeypatch, tmp_path: Path, *, credentials: bool = True) -> dict[str, str]:
    """Set the fake credentials (or none) and seal the chain off from the user's files."""
    for var in _AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    config, shared = tmp_path / "aws_config", tmp_path / "aws_credentials"
    config.write_text("")
    shared.write_text("")
    env = {
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(shared),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": REGION,
    }
    if credentials:
        env.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_SESSION_TOKEN=TOKEN)
    else:
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def local_module():
    """``examples/sagemaker_local.py`` as a module (the server the README starts)."""
    name = "sagemaker_local"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def linear_onnx(path: Path, x: np.ndarray, y: np.ndarray, num_classes: int) -> Path:
    """A linear classifier of images ``x`` (N, C, H, W), fitted in closed form (ridge
    regression on one-hot labels), written as an ONNX file (Flatten + Gemm, dynamic batch)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    flat = x.reshape(len(x), -1).astype(np.float64)
    a = np.hstack([flat, np.ones((len(flat), 1))])
    target = np.eye(num_classes)[y]
    w = np.linalg.solve(a.T @ a + 1.0 * np.eye(a.shape[1]), a.T @ target)
    weights = numpy_helper.from_array(w[:-1].astype(np.float32), "W")
    bias = numpy_helper.from_array(w[-1].astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"]),
            helper.make_node("Gemm", ["flat", "W", "b"], ["logits"]),
        ],
        "linear_digits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x.shape[1:]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        [weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def start_server(onnx_path: Path, **over):
    """The local signing server for ``onnx_path``, accepting the fake credentials."""
    mod = local_module()
    opts = {
        "name": NAME, "region": REGION, "access_key": KEY_ID, "secret_key": SECRET,
        "token": TOKEN, **over,
    }  # fmt: skip
    return mod.LocalSageMaker(mod.onnx_predict(onnx_path), **opts)
