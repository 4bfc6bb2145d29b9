"""A TensorFlow (Keras) model audited by xrobust through ONNX: black-box and white-box.

1. trains a tiny Keras CNN on scikit-learn's 8x8 digits (pixels in [0, 1], channels last
   as Keras has them);
2. exports it with tf2onnx, as is: the ONNX input stays NHWC (``[N, 8, 8, 1]``; no
   ``--inputs-as-nchw``);
3. black-box: ``as_classifier("digits_keras.onnx", spec=ds.spec)`` reads the NHWC layout
   from the graph and takes xrobust's NCHW data as it is; clean accuracy, accuracy under
   noise, occlusion maps and a query budget, every query counted; then ``audit(clf, ...)``
   runs every query-only part of the audit;
4. white-box (when onnx2torch is installed): the same graph as a differentiable torch
   module, checked against onnxruntime, so that PGD runs on the TensorFlow model; its input
   gradients are compared with TensorFlow's own (``tf.GradientTape``); the same audit runs
   white-box.

Needs: pip install 'xrobust[onnx,tensorflow]' (and, for step 4, pip install --no-deps
onnx2torch). Run: python examples/tensorflow_model.py [OUT_DIR]
(XROBUST_EXAMPLES_FAST=1 for a quick smoke run).
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter

import numpy as np
import tensorflow as tf
import torch
from keras_digits import to_nhwc, to_onnx, train_cnn

from xrobust.attacks import PGD
from xrobust.audit import AuditConfig, audit
from xrobust.data import as_tensors, load_dataset
from xrobust.errors import ConfigError, QueryBudgetExhausted
from xrobust.explain import explain
from xrobust.models import as_classifier

fast = os.environ.get("XROBUST_EXAMPLES_FAST") == "1"
out = Path(sys.argv[1] if len(sys.argv) > 1 else "tf_example")
out.mkdir(parents=True, exist_ok=True)
keras = tf.keras

# ---------------------------------------------------------------- 1. a Keras model
ds = load_dataset("digits", size=8)  # 1x8x8 in [0, 1]: xrobust's data is channels first
x_train, y_train = as_tensors(ds.train)
x_test, y_test = as_tensors(ds.test, limit=128 if fast else 256)

model = train_cnn(x_train, y_train, epochs=3 if fast else 10)  # examples/keras_digits.py
_, keras_acc = model.evaluate(to_nhwc(x_test), y_test.numpy(), verbose=0)
print(f"Keras test accuracy: {keras_acc:.3f}")

# ---------------------------------------------------------------- 2. to ONNX (NHWC kept)
# (examples/keras_digits.py: the same as `python -m tf2onnx.convert --saved-model DIR`)
path = to_onnx(model, out / "digits_keras.onnx")

# ---------------------------------------------------------------- 3. black box
clf = as_classifier(path, spec=ds.spec)  # layout read from the graph: NHWC
info = clf.describe()
print(
    f"ONNX model {info['file']}: opset {info['opset']}, layout {info['layout']}, "
    f"input {info['input_name']} {info['graph_input_shape']}, output {info['output']}"
)
keras_logits = model.predict(to_nhwc(x_test), verbose=0)
onnx_logits = clf.scores(x_test).numpy()  # NCHW data in, the classifier permutes it
print(f"onnxruntime vs Keras on NCHW data: max abs logit difference {np.abs(onnx_logits - keras_logits).max():.2g}")

clean = float((clf.predict(x_test) == y_test).float().mean())
g = torch.Generator().manual_seed(0)
noisy = (x_test + 0.1 * torch.randn(x_test.shape, generator=g)).clamp(*ds.spec.bounds)
noise = float((clf.predict(noisy) == y_test).float().mean())
print(f"black-box: clean accuracy {clean:.3f}, under Gaussian noise (sigma 0.1) {noise:.3f}")

occ = explain(clf, x_test[:8], method="occlusion", window=2, stride=1)  # forward calls only
print(f"occlusion maps {tuple(occ.attributions.shape)} for classes {occ.target.tolist()}")
print(f"queries so far: {clf.queries} rows in {clf.calls} onnxruntime calls")

with clf.budget(100):  # a budget stops work cleanly: nothing is asked past it
    try:
        clf.scores(x_test[:64])
        clf.scores(x_test[:64])
    except QueryBudgetExhausted as exc:
        print(f"budget: {exc}")

# the audit of the black box: every part that needs only queries (clean, calibration,
# corruptions, occlusion); the report lists what it skipped and why, and the queries used
n = 64 if fast else 256
config = AuditConfig.from_dict(
    {
        "adversarial": {"n": n, "norms": ["linf"], "minimal_perturbation": False},
        "corruption": {"n": n, "severities": [1, 3]},
        "explanations": {
            "n": 4, "methods": ["integrated_gradients", "occlusion"],
            "black_box_methods": ["occlusion"], "randomisation": False, "stability": False,
        },
        "sanity": {"n": 16},
    }
)  # fmt: skip
clf.reset_queries()
black = audit(clf, ds, config)
black.save(out / "black_box")
skipped = [p["part"] for p in black.not_run()]  # each part once, with its sections
print(
    f"black-box audit: clean accuracy {black.sections['clean'].data['accuracy']:.3f}, "
    f"{black.queries['total']:,} queries; not run: {', '.join(skipped)}"
)

# ---------------------------------------------------------------- 4. white box
try:
    white = clf.to_torch(x_test[:64])  # checked against onnxruntime (tol 1e-4)
except ConfigError as exc:  # onnx2torch not installed
    print(f"white-box skipped: {exc}")
    sys.exit(0)
print(f"onnx2torch conversion: max abs difference {white.describe()['conversion_max_abs_diff']:.2g} on 64 rows")

xg = x_test[:32].clone().requires_grad_(True)
torch.nn.functional.cross_entropy(white.module(xg), y_test[:32], reduction="sum").backward()
xt = tf.convert_to_tensor(to_nhwc(x_test[:32]))
with tf.GradientTape() as tape:
    tape.watch(xt)
    loss = tf.reduce_sum(
        keras.losses.sparse_categorical_crossentropy(y_test[:32].numpy(), model(xt), from_logits=True)
    )
tf_grad = np.transpose(tape.gradient(loss, xt).numpy(), (0, 3, 1, 2))  # back to NCHW
print(f"input gradients, torch vs TensorFlow: max abs difference {np.abs(xg.grad.numpy() - tf_grad).max():.2g}")

res = PGD(white.module, eps=0.1, step_size=0.025, steps=10 if fast else 20, bounds=ds.spec.bounds).run(x_test, y_test)
# the adversarial examples, checked on the original (onnxruntime) model
transfer = float((clf.predict(res.x_adv) == y_test).float().mean())
print(
    f"white-box PGD (Linf eps=0.1): robust accuracy {res.robust_accuracy:.3f} "
    f"(clean {res.clean_accuracy:.3f}); onnxruntime on the same examples: {transfer:.3f}"
)

# the same audit, white-box: the gradient attacks and explainers run too, and the report
# records the conversion check (model.classifier.conversion_max_abs_diff)
white_report = audit(white, ds, config)
white_report.save(out / "white_box")
print(f"white-box audit: passed {white_report.passed}; reports in {out / 'black_box'} and {out / 'white_box'}")
