"""Evaluation helpers: robustness curves, per-class accuracy, confusion."""

from __future__ import annotations

import json

import torch

from xrobust.attacks import PGD
from xrobust.attacks.evaluation import (
    adversarial_confusion,
    per_class_accuracy,
    robustness_curve,
)


def test_robustness_curve_is_monotone_and_starts_at_clean(digits_cnn, digits28) -> None:
    x, y = digits28["x_test"][:64], digits28["y_test"][:64]
    curve = robustness_curve(digits_cnn, (x, y), "pgd", eps=[0.2, 0.0, 0.05, 0.1], steps=5, seed=0)
    assert curve.eps == [0.0, 0.05, 0.1, 0.2]
    assert curve.robust_accuracy[0] == curve.clean_accuracy
    assert all(a >= b for a, b in zip(curve.robust_accuracy, curve.robust_accuracy[1:]))
    assert curve.robust_accuracy[-1] < 0.2 < curve.clean_accuracy
    json.dumps(curve.to_dict())
    # each point matches a direct attack (or is lower: worst case over smaller radii)
    direct = PGD(digits_cnn, eps=0.1, steps=5, seed=0).run(x, y)
    assert curve.robust_accuracy[2] <= direct.robust_accuracy


def test_per_class_and_confusion_are_consistent(digits_cnn, digits28) -> None:
    x, y = digits28["x_test"][:96], digits28["y_test"][:96]
    res = PGD(digits_cnn, eps=0.1, steps=5, seed=0).run(x, y)
    pc = per_class_accuracy(res, 10)
    assert sum(pc.count) == 96
    total = sum(c * a for c, a in zip(pc.count, pc.robust_accuracy) if a is not None)
    assert abs(total / 96 - res.robust_accuracy) < 1e-6
    cm = adversarial_confusion(res, 10)
    m = torch.tensor(cm.matrix)
    assert int(m.sum()) == 96
    assert torch.equal(m.sum(1), torch.bincount(res.pred_clean, minlength=10))
    assert torch.equal(m.sum(0), torch.bincount(res.pred_adv, minlength=10))
    json.dumps(pc.to_dict())
    json.dumps(cm.to_dict())
    json.dumps(res.to_dict())


def test_run_loader_takes_a_target_per_example(digits_cnn, digits28) -> None:
    from xrobust.attacks import PGD

    x, y = digits28["x_test"][:40], digits28["y_test"][:40]
    target = (y + 1) % 10
    atk = PGD(digits_cnn, eps=0.3, steps=5, seed=0)
    res = atk.run_loader((x, y), batch_size=16, target=target, keep_adv=True)
    parts = [atk.run(x[i : i + 16], y[i : i + 16], target[i : i + 16], batch_index=i // 16) for i in range(0, 40, 16)]
    assert torch.equal(res.target, target)
    assert torch.equal(res.pred_adv, torch.cat([p.pred_adv for p in parts]))
    assert torch.equal(res.success, res.pred_adv == target)
