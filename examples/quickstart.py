"""Train, attack and explain in a few lines (digits, small CNN, CPU).

Run: python examples/quickstart.py   (XROBUST_EXAMPLES_FAST=1 for a 1-epoch smoke run)
"""

import os

from xrobust.attacks import PGD
from xrobust.data import as_tensors, load_dataset
from xrobust.explain import explain
from xrobust.trainer import TrainConfig, train

fast = os.environ.get("XROBUST_EXAMPLES_FAST") == "1"

ds = load_dataset("digits")  # 1x28x28 images in [0, 1], bundled with scikit-learn
model, history = train(
    ds, "small_cnn", TrainConfig(epochs=1 if fast else 6, device="cpu"), progress=False
)
print(f"test accuracy after training: {history.test_acc:.3f}")

x, y = as_tensors(ds.test, limit=64)
result = PGD(model, eps=0.1, steps=10, norm="linf", bounds=ds.spec.bounds).run(x, y)
print(
    f"clean {result.clean_accuracy:.3f} -> robust {result.robust_accuracy:.3f} (PGD-10, Linf eps=0.1)"
)

e = explain(model, x[:4], method="integrated_gradients")  # target: the predicted class
print(
    f"integrated gradients for classes {e.target.tolist()}: attributions {tuple(e.attributions.shape)}"
)
