"""Parity: every wrapped method gives what Captum gives when called directly with the
same arguments (and, for stochastic methods, the same seed)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import captum.attr as ca
import numpy as np
import pytest
import torch

from xrobust.explain import explain

N = 4


@pytest.fixture(scope="module")
def batch(digits28: dict[str, torch.Tensor], digits_cnn: torch.nn.Module) -> tuple:
    x = digits28["x_test"][:N]
    with torch.no_grad():
        t = digits_cnn(x).argmax(1)
    return x, t


def _patch_mask() -> torch.Tensor:
    ids = (torch.arange(28) // 4)[:, None] * 7 + (torch.arange(28) // 4)[None, :]
    return ids.view(1, 1, 28, 28)


def _close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float32 round-off of batched forward passes (relative to the map's scale)."""
    scale = float(expected.abs().max())
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * scale + 1e-7)


def _seeded(fn: Callable[[], Any], seed: int = 0) -> Any:
    """Seed as ``explain(..., seed=seed)`` does: torch, NumPy and Python's generators."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        try:
            return fn()
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


# name -> (our options, Captum call given (model, x, target)); seed 0 for both
IMAGE_CASES: dict[str, tuple[dict[str, Any], Callable[..., Any]]] = {
    "saliency": ({}, lambda m, x, t: ca.Saliency(m).attribute(x, target=t)),
    "input_x_gradient": ({}, lambda m, x, t: ca.InputXGradient(m).attribute(x, target=t)),
    "integrated_gradients": (
        {},
        lambda m, x, t: ca.IntegratedGradients(m).attribute(
            x, baselines=torch.zeros_like(x), target=t, n_steps=64, method="gausslegendre"
        ),
    ),
    "smoothgrad": (
        {"nt_samples": 8, "nt_samples_batch_size": 4, "stdevs": 0.2},
        lambda m, x, t: ca.NoiseTunnel(ca.Saliency(m)).attribute(
            x, nt_type="smoothgrad", nt_samples=8, nt_samples_batch_size=4, stdevs=0.2, target=t
        ),
    ),
    "vargrad": (
        {"nt_samples": 6, "nt_samples_batch_size": 6, "base": "integrated_gradients", "n_steps": 8},
        lambda m, x, t: ca.NoiseTunnel(ca.IntegratedGradients(m)).attribute(
            x,
            nt_type="vargrad",
            nt_samples=6,
            nt_samples_batch_size=6,
            stdevs=0.15,
            target=t,
            baselines=torch.zeros_like(x),
            n_steps=8,
        ),
    ),
    "deeplift": (
        {},
        lambda m, x, t: ca.DeepLift(m).attribute(x, baselines=torch.zeros_like(x), target=t),
    ),
    "guided_backprop": ({}, lambda m, x, t: ca.GuidedBackprop(m).attribute(x, target=t)),
    "gradcam": (
        {},
        lambda m, x, t: ca.LayerAttribution.interpolate(
            ca.LayerGradCam(m, m.conv2).attribute(x, target=t, relu_attributions=True),
            (28, 28),
            interpolate_mode="bilinear",
        ),
    ),
    "guided_gradcam": (
        {"layer": "conv1"},
        lambda m, x, t: ca.GuidedGradCam(m, m.conv1).attribute(x, target=t),
    ),
    "occlusion": (
        {"window": 4, "stride": 2},
        lambda m, x, t: ca.Occlusion(m).attribute(
            x,
            sliding_window_shapes=(1, 4, 4),
            strides=(1, 2, 2),
            baselines=0.0,
            target=t,
            perturbations_per_eval=32,
        ),
    ),
    "feature_ablation": (
        {},
        lambda m, x, t: ca.FeatureAblation(m).attribute(
            x, baselines=0.0, target=t, feature_mask=_patch_mask(), perturbations_per_eval=16
        ),
    ),
    "shapley_value_sampling": (
        {"n_samples": 2},
        lambda m, x, t: ca.ShapleyValueSampling(m).attribute(
            x,
            baselines=0.0,
            target=t,
            feature_mask=_patch_mask(),
            n_samples=2,
            perturbations_per_eval=16,
        ),
    ),
    # Captum's KernelShap and Lime draw their samples in perturbations_per_eval-sized
    # groups, so the sample (not the estimator) depends on it: pass the same value
    "kernel_shap": (
        {"n_samples": 32, "perturbations_per_eval": 16},
        lambda m, x, t: ca.KernelShap(m).attribute(
            x,
            baselines=0.0,
            target=t,
            feature_mask=_patch_mask(),
            n_samples=32,
            perturbations_per_eval=16,
        ),
    ),
    "lime": (
        {"n_samples": 32, "perturbations_per_eval": 16},
        lambda m, x, t: ca.Lime(m).attribute(
            x,
            baselines=0.0,
            target=t,
            feature_mask=_patch_mask(),
            n_samples=32,
            perturbations_per_eval=16,
        ),
    ),
}


def test_every_registered_method_has_a_parity_case() -> None:
    from xrobust.explain import list_explainers

    missing = set(list_explainers()) - set(IMAGE_CASES) - {"gradient_shap"}
    assert not missing, f"no Captum parity case for {sorted(missing)}"


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("method", sorted(IMAGE_CASES))
def test_image_parity_with_captum(method: str, digits_cnn: torch.nn.Module, batch: tuple) -> None:
    x, t = batch
    ours_kw, theirs = IMAGE_CASES[method]
    if method in ("kernel_shap", "lime"):
        x, t = x[:1], t[:1]  # one surrogate model per example: keep it short
    expected = _seeded(lambda: theirs(digits_cnn, x, t)).expand_as(x)
    got = explain(digits_cnn, x, target=t, method=method, seed=0, **ours_kw)
    assert got.method == method
    assert torch.equal(got.target, t)
    _close(got.attributions, expected)
    assert not torch.equal(got.attributions, torch.zeros_like(x)), "an all-zero map proves nothing"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_gradient_shap_parity_and_delta(digits_cnn: torch.nn.Module, batch: tuple) -> None:
    x, t = batch
    dist = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    a, d = _seeded(
        lambda: ca.GradientShap(digits_cnn).attribute(
            x, baselines=dist, n_samples=10, stdevs=0.05, target=t, return_convergence_delta=True
        )
    )
    got = explain(
        digits_cnn, x, t, "gradient_shap", seed=0, baselines=dist, n_samples=10, stdevs=0.05
    )
    _close(got.attributions, a)
    torch.testing.assert_close(got.delta, d.view(N, 10).mean(1), rtol=1e-4, atol=1e-6)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ig_delta_matches_captum_and_chunking_changes_nothing(
    digits_cnn: torch.nn.Module, batch: tuple
) -> None:
    x, t = batch
    a, d = ca.IntegratedGradients(digits_cnn).attribute(
        x, baselines=0.0, target=t, n_steps=64, return_convergence_delta=True
    )
    # a budget of a few rows forces both example chunks and step chunks
    small = explain(digits_cnn, x, t, "integrated_gradients", memory_budget_mb=2)
    _close(small.attributions, a)
    torch.testing.assert_close(small.delta, d, rtol=1e-3, atol=1e-5)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "method, ours_kw, theirs",
    [
        (
            "integrated_gradients",
            {"baselines": "mean"},
            lambda m, x, t, ref: ca.IntegratedGradients(m).attribute(
                x, baselines=ref.mean(0, keepdim=True).expand_as(x), target=t, n_steps=64
            ),
        ),
        (
            "deeplift",
            {},
            lambda m, x, t, ref: ca.DeepLift(m).attribute(x, baselines=0.0, target=t),
        ),
        (
            "feature_ablation",
            {"baselines": "mean"},
            lambda m, x, t, ref: ca.FeatureAblation(m).attribute(
                x, baselines=ref.mean(0, keepdim=True), target=t
            ),
        ),
        (
            "kernel_shap",
            {"n_samples": 80, "perturbations_per_eval": 1},
            lambda m, x, t, ref: ca.KernelShap(m).attribute(x, target=t, n_samples=80),
        ),
    ],
)
def test_tabular_parity_with_captum(
    method: str,
    ours_kw: dict[str, Any],
    theirs: Callable[..., torch.Tensor],
    tabular_mlp: torch.nn.Module,
    breast_cancer: dict[str, Any],
) -> None:
    x, ref = breast_cancer["x_test"][:4], breast_cancer["x_train"]
    t = tabular_mlp(x).argmax(1)
    expected = _seeded(lambda: theirs(tabular_mlp, x, t, ref))
    got = explain(tabular_mlp, x, t, method, seed=0, reference=ref, **ours_kw)
    _close(got.attributions, expected)


def test_deeplift_rescale_rule_sums_to_output_difference(
    tabular_mlp: torch.nn.Module, breast_cancer: dict[str, Any]
) -> None:
    # nn.ReLU modules: DeepLIFT's rescale rule makes attributions sum exactly to the delta
    x = breast_cancer["x_test"][:8]
    e = explain(tabular_mlp, x, method="deeplift")
    with torch.no_grad():
        diff = tabular_mlp(x) - tabular_mlp(torch.zeros_like(x))
    expected = diff.gather(1, e.target[:, None])[:, 0]
    torch.testing.assert_close(e.attributions.sum(1), expected, rtol=1e-4, atol=1e-5)
    assert e.delta.abs().max() < 1e-4
