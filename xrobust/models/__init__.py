"""Model zoo, in-model normalisation, safe checkpoints, and the classifier interface
(:func:`as_classifier`) that every source (torch, callable, ONNX, endpoint, SageMaker) stands
behind;
:mod:`xrobust.models.serving` is a local TF-Serving-compatible test/demo server.

Example:
    >>> from xrobust.data.spec import DatasetSpec
    >>> from xrobust.models import build_model, list_models
    >>> list_models()
    ['mlp', 'resnet', 'small_cnn']
    >>> spec = DatasetSpec("d", "image", (1, 28, 28), 10, tuple("0123456789"), (0.0, 1.0))
    >>> build_model("small_cnn", spec)(__import__("torch").zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

from xrobust.models import mlp as _mlp  # noqa: F401  (registers "mlp")
from xrobust.models import resnet as _resnet  # noqa: F401  (registers "resnet")
from xrobust.models import small_cnn as _small_cnn  # noqa: F401  (registers "small_cnn")
from xrobust.models._build import MODELS, build_model, list_models
from xrobust.models.checkpoint import (
    LoadedRun,
    load_model,
    load_run,
    read_metadata,
    save_checkpoint,
)
from xrobust.models.classifier import (
    CallableClassifier,
    Classifier,
    QueryBudgetExhausted,
    TorchClassifier,
    as_classifier,
)
from xrobust.models.endpoint import EndpointClassifier
from xrobust.models.mlp import MLP
from xrobust.models.normalize import Normalize, NormalizedModel
from xrobust.models.resnet import PreActResNet
from xrobust.models.sagemaker import SageMakerClassifier
from xrobust.models.small_cnn import SmallCNN
from xrobust.models.tflite import TFLiteClassifier

__all__ = [
    "MLP",
    "MODELS",
    "CallableClassifier",
    "Classifier",
    "EndpointClassifier",
    "LoadedRun",
    "Normalize",
    "NormalizedModel",
    "PreActResNet",
    "QueryBudgetExhausted",
    "SageMakerClassifier",
    "SmallCNN",
    "TFLiteClassifier",
    "TorchClassifier",
    "as_classifier",
    "build_model",
    "list_models",
    "load_model",
    "load_run",
    "read_metadata",
    "save_checkpoint",
]
