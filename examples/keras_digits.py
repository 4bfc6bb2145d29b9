"""A tiny Keras CNN on scikit-learn's 8x8 digits and its deployable forms, shared by
examples/tensorflow_model.py, examples/tflite_model.py and the tests.

- :func:`train_cnn`: the Keras model (channels last, as Keras has it; logits out);
- :func:`to_onnx`: the same model as an ONNX file through tf2onnx (the input stays NHWC);
- :func:`to_tflite`: a float32 ``.tflite`` file, or with ``int8_rows`` a full-integer one
  (int8 input and output with the converter's scale and zero point, calibrated on those
  rows).

Needs: pip install 'xrobust[tensorflow,tflite]'.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter

import numpy as np
import tensorflow as tf

keras = tf.keras


def to_nhwc(t: Any) -> np.ndarray:
    """xrobust's NCHW tensor as the NHWC array Keras takes."""
    return t.permute(0, 2, 3, 1).numpy()


def train_cnn(x_train: Any, y_train: Any, *, epochs: int = 10, filters: int = 16,
              seed: int = 0) -> Any:  # fmt: skip
    """A small Keras CNN (conv, pool, dense) trained on NCHW tensors ``x_train``."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),  # logits
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(to_nhwc(x_train), np.asarray(y_train), epochs=epochs, batch_size=64, verbose=0)
    return model


def to_onnx(model: Any, path: str | Path) -> Path:
    """The model as an ONNX file, input ``image`` of shape [N, 8, 8, 1] (NHWC kept).

    The same as ``python -m tf2onnx.convert --saved-model DIR --output FILE`` after
    ``model.export(DIR)`` (``tf2onnx.convert.from_keras`` fails with Keras 3).
    """
    import tf2onnx

    spec = (tf.TensorSpec((None, 8, 8, 1), tf.float32, name="image"),)
    tf2onnx.convert.from_function(
        tf.function(lambda image: model(image, training=False)),
        input_signature=spec,
        opset=15,
        output_path=str(path),
    )
    return Path(path)


def to_tflite(model: Any, path: str | Path, *, int8_rows: Any = None) -> Path:
    """The model as a ``.tflite`` file: float32, or full int8 calibrated on the NCHW
    tensor ``int8_rows`` (one row per calibration step, as the converter wants)."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8_rows is not None:
        rows = to_nhwc(int8_rows).astype(np.float32)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rows[i : i + 1]] for i in range(len(rows)))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    Path(path).write_bytes(conv.convert())
    return Path(path)
