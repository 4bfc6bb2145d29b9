"""A TensorFlow Lite model audited where it ships: the int8 ``.tflite`` beside its float source.

1. trains the tiny Keras CNN of examples/keras_digits.py on the 8x8 digits (pixels in
   [0, 1]);
2. converts it to ONNX (tf2onnx, NHWC kept), to a float32 ``.tflite`` and to a full-int8
   ``.tflite`` (int8 input and output, calibrated on 200 training images);
3. reads both ``.tflite`` files with ``as_classifier`` (ai_edge_litert): the layout (NHWC),
   the quantization (scale and zero point) and the outputs checked against Keras;
4. audits the int8 file as a black box beside the ONNX source on the same examples
   (:func:`xrobust.audit.compare_deployed`): clean accuracy of each, agreement, robust
   accuracy of each under the same query-only attack (Square, same seeds), the source's
   white-box APGD examples (through onnx2torch) evaluated on the int8 model, and what
   quantization changed, in words. The report is written to OUT_DIR/deployed.

The same audit from the command line:
    xrobust audit --tflite OUT_DIR/model_int8.tflite --source OUT_DIR/model.onnx \\
        --data digits --resize --skip adversarial,corruption,explanations,sanity

Needs: pip install 'xrobust[onnx,tensorflow,tflite]' (and pip install --no-deps onnx2torch
for the white-box part). Run: python examples/tflite_model.py [OUT_DIR]
(XROBUST_EXAMPLES_FAST=1 for a quick smoke run).
"""

import os
import sys
from pathlib import Path

import numpy as np
from keras_digits import to_nhwc, to_onnx, to_tflite, train_cnn

from xrobust.audit import AuditConfig, compare_deployed
from xrobust.data import as_tensors, load_dataset
from xrobust.models import as_classifier

fast = os.environ.get("XROBUST_EXAMPLES_FAST") == "1"
out = Path(sys.argv[1] if len(sys.argv) > 1 else "tflite_example")
out.mkdir(parents=True, exist_ok=True)

# ---------------------------------------------------------------- 1. a Keras model
ds = load_dataset("digits", size=8)  # 1x8x8 in [0, 1], channels first
x_train, y_train = as_tensors(ds.train)
x_test, y_test = as_tensors(ds.test)
model = train_cnn(x_train, y_train, epochs=4 if fast else 10)

# ---------------------------------------------------------------- 2. ONNX, float and int8
onnx_path = to_onnx(model, out / "model.onnx")
float_path = to_tflite(model, out / "model_float.tflite")
int8_path = to_tflite(model, out / "model_int8.tflite", int8_rows=x_train[:200])
sizes = ", ".join(f"{p.name} {p.stat().st_size / 1024:.0f} KB" for p in (float_path, int8_path))
print(f"converted: {onnx_path.name}, {sizes}")

# ---------------------------------------------------------------- 3. the .tflite files
keras_logits = model.predict(to_nhwc(x_test), verbose=0)
for path in (float_path, int8_path):
    clf = as_classifier(path, spec=ds.spec)  # NHWC read from the file; NCHW data in
    info = clf.describe()
    q = info["input_tensor"]
    quant = f"input {q['dtype']}" + (
        f" (scale {q['scale']:.5f}, zero point {q['zero_point']})" if info["quantized"] else ""
    )
    logits = clf.scores(x_test).numpy()
    agree = float((logits.argmax(1) == keras_logits.argmax(1)).mean())
    print(
        f"{path.name}: layout {info['layout']}, quantized {info['quantized']}, {quant}; "
        f"max abs logit difference to Keras {np.abs(logits - keras_logits).max():.2g}, "
        f"same class as Keras on {agree:.3f} of {len(x_test)} images"
    )

# ---------------------------------------------------------------- 4. int8 beside its source
n = 64 if fast else 128
config = AuditConfig.from_dict(
    {"deployed": {"n": n, "queries": 300 if fast else 1000, "eps": 0.1}, "sanity": {"enabled": False}}
)
report = compare_deployed(int8_path, onnx_path, ds, config)
report.save(out / "deployed")
d = report.sections["deployed"].data
print(f"deployed beside its source, n={d['n']}, {d['norm']} eps={d['eps']:g}:")
print(f"  clean accuracy: int8 {d['clean']['deployed']:.4f}, float {d['clean']['source']:.4f}; agreement {d['clean']['agreement']:.4f}")
r = d["robust"]
print(f"  robust accuracy under {r['attack']} (upper bounds): int8 {r['deployed']:.4f}, float {r['source']:.4f}")
if d["white_box"] is not None:
    w, t = d["white_box"], d["transfer"]
    print(f"  float source under white-box {w['attack']} (measured): {w['source']:.4f}")
    print(f"  int8 on the source's {t['attack']} examples (transfer): {t['deployed']:.4f}, transfer rate {t['transfer_rate']}")
else:
    print("  white-box and transfer skipped: " + "; ".join(p["reason"] for p in report.sections["deployed"].skipped_parts))
for f in d["findings"]:
    print(f"  - {f['text']}")
print(f"summary: {d['summary']}")
print(f"report: {out / 'deployed' / 'report.html'}")
