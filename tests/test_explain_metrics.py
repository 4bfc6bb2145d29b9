"""Quality metrics: hand-computed cases on tiny analytic models, then the acceptance
checks on the digits CNN (IG completeness, sanity check, deletion/insertion vs random,
stability under an FGSM perturbation)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xrobust.errors import ConfigError, DataError
from xrobust.explain import explain
from xrobust.explain.metrics import (
    CurveResult,
    attribution_similarity,
    deletion_curve,
    ig_completeness,
    infidelity,
    insertion_curve,
    max_sensitivity,
    model_randomisation_check,
    spearman,
    stability_under_attack,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class _Linear2(nn.Module):
    """logits = [w . x, 0]: the target-0 probability is sigmoid(w . x)."""

    def __init__(self, w: list[float]) -> None:
        super().__init__()
        self.lin = nn.Linear(len(w), 1, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([w]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.lin(x)
        return torch.cat([z, torch.zeros_like(z)], 1)


# ------------------------------------------------------------------ hand-computed cases
def test_spearman_matches_scipy_with_ties() -> None:
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (5, 30), generator=g).float()  # many ties
    b = a + torch.randn(5, 30, generator=g)
    ours = spearman(a, b)
    for i in range(5):
        assert ours[i].item() == pytest.approx(spearmanr(a[i], b[i]).statistic, abs=1e-6)
    assert spearman(a, a).tolist() == pytest.approx([1.0] * 5)
    assert spearman(torch.zeros(1, 4), torch.rand(1, 4)).tolist() == [0.0]  # constant map


def test_topk_overlap_by_hand() -> None:
    a = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    b = torch.tensor([[5.0, 0.0, 3.0, 2.0, 1.0, 4.0]])  # top-2 {0,1} vs {0,5}
    s = attribution_similarity(a, b, k=2)
    assert s.k == 2 and s.topk_overlap == [0.5]
    assert attribution_similarity(a, b, k=0.5).topk_overlap == [pytest.approx(2 / 3)]
    assert attribution_similarity(-a, a, k=1).topk_overlap == [1.0]  # |maps| by default
    with pytest.raises(ConfigError, match="k must be"):
        attribution_similarity(a, b, k=0)


def test_deletion_and_insertion_curves_by_hand() -> None:
    m = _Linear2([4.0, 3.0, 2.0, 1.0])
    x = torch.ones(1, 4)
    attr = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    d = deletion_curve(m, x, attr, target=0, steps=4)
    sig = torch.sigmoid(torch.tensor([10.0, 6.0, 3.0, 1.0, 0.0]))
    assert d.fractions == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert d.scores[0] == pytest.approx(sig.tolist(), abs=1e-6)
    auc = sum((sig[i] + sig[i + 1]).item() / 2 * 0.25 for i in range(4))
    assert d.auc[0] == pytest.approx(auc, abs=1e-6)
    ins = insertion_curve(m, x, attr, target=0, steps=4, baseline="zeros")
    sig_i = torch.sigmoid(torch.tensor([0.0, 4.0, 7.0, 9.0, 10.0]))
    assert ins.scores[0] == pytest.approx(sig_i.tolist(), abs=1e-6)
    # the reversed ranking deletes the weakest first: a worse (higher) deletion AUC
    assert deletion_curve(m, x, attr.flip(1), target=0, steps=4).auc[0] > d.auc[0]
    back = CurveResult.from_dict(json.loads(json.dumps(d.to_dict())))
    assert back.auc == d.auc and back.mean_auc == d.mean_auc
    with pytest.raises(DataError, match="do not match"):
        deletion_curve(m, x, torch.ones(1, 3), target=0)


def test_ig_completeness_and_infidelity_and_sensitivity_on_linear_model() -> None:
    m = _Linear2([0.5, -2.0, 1.0])
    x = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    c = ig_completeness(m, x, target=0, n_steps=4)
    assert c.passed and c.max_rel_delta < 1e-6
    grad = torch.tensor([[0.5, -2.0, 1.0]]).expand_as(x)
    assert infidelity(m, x, grad, target=0, normalize=False).mean < 1e-10
    assert infidelity(m, x, torch.rand(2, 3), target=0).mean > 1e-3
    assert max_sensitivity(m, x, "saliency", target=0).values == [0.0, 0.0]
    ms = max_sensitivity(
        nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)), x, "saliency", radius=0.1
    )
    assert all(v > 0 for v in ms.values)


# --------------------------------------------------------------- digits CNN acceptance
@pytest.fixture(scope="module")
def xs(digits28: dict[str, torch.Tensor]) -> torch.Tensor:
    return digits28["x_test"][:8]


def test_ig_completeness_at_the_default_steps(
    digits_cnn: nn.Module, digits28: dict[str, torch.Tensor]
) -> None:
    c = ig_completeness(digits_cnn, digits28["x_test"][:32])
    assert c.n_steps == 64
    assert c.max_rel_delta < 1e-2, c.max_rel_delta
    assert c.passed


def _input_itself(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return x.clone()


def _edge_filter(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    return F.conv2d(x, k, padding=1)


def test_sanity_check_passes_model_dependent_methods(
    digits_cnn: nn.Module, xs: torch.Tensor
) -> None:
    state = copy.deepcopy(digits_cnn.state_dict())
    results = {
        "saliency": model_randomisation_check(digits_cnn, xs, "saliency"),
        "gradcam": model_randomisation_check(digits_cnn, xs, "gradcam"),
        # with a zero baseline IG is x * (mean gradient): on digits' black background its
        # ranking follows the input's support (see the next test); a noise baseline
        # lets it show the model
        "integrated_gradients": model_randomisation_check(
            digits_cnn, xs, "integrated_gradients", n_steps=16, baselines="uniform"
        ),
    }
    for name, r in results.items():
        assert r.layers == ["fc2", "fc1", "conv2", "conv1"], name
        assert r.passed, (name, r.spearman)
        assert r.final_spearman < 0.5
    assert results["saliency"].spearman[0] < 0.9  # already the top layer changes the map
    for k, v in state.items():  # the user's model is untouched
        assert torch.equal(digits_cnn.state_dict()[k], v)


def test_sanity_check_fails_model_ignoring_maps(digits_cnn: nn.Module, xs: torch.Tensor) -> None:
    for fn in (_input_itself, _edge_filter):
        r = model_randomisation_check(digits_cnn, xs, fn)
        assert not r.passed
        assert r.spearman == pytest.approx([1.0] * 4)
        assert r.method == fn.__name__
    # input x gradient with a zero baseline tracks the input more than the model here
    ixg = model_randomisation_check(digits_cnn, xs, "input_x_gradient")
    sal = model_randomisation_check(digits_cnn, xs, "saliency")
    assert ixg.final_spearman > sal.final_spearman
    json.dumps(ixg.to_dict())


def test_deletion_insertion_beat_random_attribution(
    digits_cnn: nn.Module, digits28: dict[str, torch.Tensor]
) -> None:
    x = digits28["x_test"][:10]
    rnd = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    base = explain(digits_cnn, x, method="saliency")
    r_del = deletion_curve(digits_cnn, x, rnd, base.target, steps=16).mean_auc
    r_ins = insertion_curve(digits_cnn, x, rnd, base.target, steps=16).mean_auc
    for method, kw in (("integrated_gradients", {}), ("occlusion", {"window": 4, "stride": 4})):
        e = explain(digits_cnn, x, base.target, method, **kw)
        d = deletion_curve(digits_cnn, x, e, steps=16)
        i = insertion_curve(digits_cnn, x, e, steps=16)
        assert d.method == method
        assert d.mean_auc < r_del - 0.2, (method, d.mean_auc, r_del)
        assert i.mean_auc > r_ins, (method, i.mean_auc, r_ins)


def _fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return (x + eps * g.sign()).clamp(0, 1).detach()


def test_stability_under_attack(digits_cnn: nn.Module, digits28: dict[str, torch.Tensor]) -> None:
    x, y = digits28["x_test"][:12], digits28["y_test"][:12]
    same = stability_under_attack(digits_cnn, x, x.clone(), "saliency", k=0.1)
    assert same.topk_overlap == pytest.approx([1.0] * 12)
    assert same.spearman == pytest.approx([1.0] * 12)
    assert not any(same.prediction_changed)
    x_adv = _fgsm(digits_cnn, x, y, 0.2)
    r = stability_under_attack(digits_cnn, x, x_adv, "saliency", k=0.1)
    assert any(r.prediction_changed)
    assert r.mean_spearman < 0.95 and r.mean_topk_overlap < 0.95
    # a small perturbation moves the map less than a large one
    small = stability_under_attack(digits_cnn, x, _fgsm(digits_cnn, x, y, 0.02), "saliency")
    assert small.mean_spearman > r.mean_spearman
    d = json.loads(json.dumps(r.to_dict()))
    assert d["k"] == round(0.1 * 784) and len(d["spearman"]) == 12
    assert math.isfinite(d["mean_topk_overlap"])


def test_stability_with_the_attacks_package(
    digits_cnn: nn.Module, digits28: dict[str, torch.Tensor]
) -> None:
    attacks = pytest.importorskip("xrobust.attacks")
    x, y = digits28["x_test"][:8], digits28["y_test"][:8]
    res = attacks.FGSM(digits_cnn, eps=0.2, norm="linf", bounds=(0.0, 1.0)).run(x, y)
    assert (res.x_adv - x).abs().max() <= 0.2 + 1e-6
    r = stability_under_attack(digits_cnn, x, res.x_adv, "integrated_gradients", n_steps=16)
    assert len(r.spearman) == 8 and r.mean_spearman < 1.0
