"""Contract tests over the whole explainer registry: shape, dtype, device, determinism under
a seed, model untouched; plus targets, errors and batching."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from xrobust.errors import ConfigError, DataError, ModelError, XRobustError
from xrobust.explain import (
    EXPLAINERS,
    Explanation,
    explain,
    explain_loader,
    get_explainer,
    list_explainers,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# fast settings for the contract checks (defaults are tuned for quality, not speed)
FAST: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 8},
    "smoothgrad": {"nt_samples": 3},
    "vargrad": {"nt_samples": 3},
    "gradient_shap": {"n_samples": 4},
    "occlusion": {"window": 4, "stride": 4},
    "feature_ablation": {"patch": 4},
    "shapley_value_sampling": {"n_samples": 2, "patch": 4},
    "kernel_shap": {"n_samples": 16, "patch": 4},
    # Captum's default Lasso surrogate zeroes every weight of this untrained toy model
    "lime": {"n_samples": 16, "patch": 4, "surrogate": "ridge"},
}
STOCHASTIC = {
    "smoothgrad",
    "vargrad",
    "gradient_shap",
    "shapley_value_sampling",
    "kernel_shap",
    "lime",
}
IMAGE_ONLY = {"gradcam", "guided_gradcam"}


class SmallCNN(nn.Module):
    """Conv net with BatchNorm and Dropout, so that a forgotten eval() changes outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.act2 = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(self.act(self.bn(self.conv1(x))), 2)
        x = nn.functional.max_pool2d(self.act2(self.conv2(x)), 2)
        return self.head(self.drop(x.flatten(1)))


@pytest.fixture
def cnn() -> nn.Module:
    torch.manual_seed(0)
    m = SmallCNN()
    with torch.no_grad():  # non-trivial running statistics
        m.bn.running_mean.uniform_(-0.2, 0.2)
        m.bn.running_var.uniform_(0.5, 1.5)
    return m


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def _snapshot(m: nn.Module) -> dict[str, Any]:
    return {
        "modes": [mod.training for mod in m.modules()],
        "requires_grad": [p.requires_grad for p in m.parameters()],
        "state": {k: v.clone() for k, v in m.state_dict().items()},
    }


@pytest.mark.parametrize("method", list_explainers())
def test_contract_images(method: str, cnn: nn.Module, images: torch.Tensor) -> None:
    cnn.train()  # the user left it in training mode; explain must not change that
    cnn.conv1.weight.requires_grad_(False)  # and a frozen layer must stay frozen
    before = _snapshot(cnn)
    e = explain(cnn, images, method=method, seed=0, **FAST.get(method, {}))

    assert isinstance(e, Explanation) and e.method == method
    assert e.attributions.shape == images.shape
    assert e.attributions.dtype == images.dtype and e.attributions.device == images.device
    assert torch.isfinite(e.attributions).all()
    assert not e.attributions.requires_grad
    assert e.target.shape == (3,) and e.target.dtype == torch.long
    if e.delta is not None:
        assert e.delta.shape == (3,)
    assert e.numpy().shape == tuple(images.shape)

    after = _snapshot(cnn)
    assert after["modes"] == before["modes"]
    assert after["requires_grad"] == before["requires_grad"]
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), f"{k} changed (BatchNorm stats updated?)"
    assert all(p.grad is None for p in cnn.parameters()), "gradients left on parameters"

    # eval mode during the explanation: the same map whatever mode the model was in
    cnn.eval()
    again = explain(cnn, images, e.target, method=method, seed=0, **FAST.get(method, {}))
    torch.testing.assert_close(again.attributions, e.attributions, rtol=1e-5, atol=1e-6)
    assert not cnn.training


@pytest.mark.parametrize("method", list_explainers())
def test_determinism_under_seed(method: str, cnn: nn.Module, images: torch.Tensor) -> None:
    kw = FAST.get(method, {})
    a = explain(cnn, images, 1, method, seed=3, **kw).attributions
    b = explain(cnn, images, 1, method, seed=3, **kw).attributions
    assert torch.equal(a, b)
    if method in STOCHASTIC:
        c = explain(cnn, images, 1, method, seed=4, **kw).attributions
        assert not torch.equal(a, c), "a different seed should draw different samples"


@pytest.mark.parametrize("method", sorted(set(list_explainers()) - IMAGE_ONLY))
def test_contract_tabular_with_names(method: str) -> None:
    m = _mlp()
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(2))
    names = [f"f{i}" for i in range(5)]
    kw = {k: v for k, v in FAST.get(method, {}).items() if k not in ("patch", "window", "stride")}
    e = explain(m, x, method=method, seed=0, feature_names=names, **kw)
    assert e.attributions.shape == x.shape and e.feature_names == tuple(names)
    assert torch.isfinite(e.attributions).all()


def test_forward_only_methods_run_on_a_plain_function() -> None:
    m = _mlp()

    def black_box(inp: torch.Tensor) -> torch.Tensor:  # no gradients, no nn.Module
        with torch.no_grad():
            return m(inp)

    x = torch.randn(2, 5, generator=torch.Generator().manual_seed(0))
    forward_only = list_explainers(requires_gradients=False)
    assert set(forward_only) == {
        "occlusion",
        "feature_ablation",
        "shapley_value_sampling",
        "kernel_shap",
        "lime",
    }
    for method in forward_only:
        got = explain(black_box, x, 0, method, seed=0, **FAST.get(method, {}))
        ref = explain(m, x, 0, method, seed=0, **FAST.get(method, {}))
        torch.testing.assert_close(got.attributions, ref.attributions)
    with pytest.raises(ModelError, match="needs gradients"):
        explain(black_box, x, 0, "saliency")


def test_targets_default_int_per_example_and_several(cnn: nn.Module, images: torch.Tensor) -> None:
    cnn.eval()
    with torch.no_grad():
        pred = cnn(images).argmax(1)
    assert torch.equal(explain(cnn, images, method="saliency").target, pred)
    assert explain(cnn, images, 2, method="saliency").target.tolist() == [2, 2, 2]
    per = explain(cnn, images, [0, 1, 2], method="saliency")
    assert per.target.tolist() == [0, 1, 2]
    many = explain(cnn, images, [[0, 1], [1, 2], [2, 0]], method="integrated_gradients", n_steps=8)
    assert many.attributions.shape == (3, 2, 1, 16, 16) and many.delta.shape == (3, 2)
    assert many.multi_target
    # column k is exactly the single-target explanation for those classes
    col = explain(cnn, images, [1, 2, 0], method="integrated_gradients", n_steps=8)
    torch.testing.assert_close(many.attributions[:, 1], col.attributions)


@pytest.mark.parametrize(
    "target, match",
    [
        (10, "outside the model's 3 classes"),
        (-1, "outside"),
        ([0, 1], "does not fit a batch of 3"),
        (0.5, "class indices"),
        ("cat", "target"),
    ],
)
def test_bad_targets_are_clear_errors(
    cnn: nn.Module, images: torch.Tensor, target: Any, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        explain(cnn, images, target, method="saliency")


def test_bad_inputs_and_options(cnn: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'integrated_gradients'"):
        explain(cnn, images, method="integrated_gradient")
    with pytest.raises(ConfigError, match="Did you mean 'n_steps'"):
        explain(cnn, images, method="integrated_gradients", nsteps=3)
    with pytest.raises(DataError, match="batch"):
        explain(cnn, images[0, 0, 0], method="saliency")
    with pytest.raises(ModelError, match=r"failed on a batch of shape \(16, 16\)"):
        explain(cnn, images[0, 0], method="saliency")
    with pytest.raises(DataError, match="floating point"):
        explain(cnn, images.long(), method="saliency")
    with pytest.raises(DataError, match="NaN"):
        explain(cnn, images * float("nan"), method="saliency")
    with pytest.raises(ModelError, match="needs a convolutional layer"):
        explain(_mlp(), torch.rand(2, 5), method="gradcam")
    with pytest.raises(DataError, match="image batches"):
        explain(cnn, torch.rand(2, 5), method="gradcam")
    with pytest.raises(ConfigError, match="no layer 'nope'"):
        explain(cnn, images, method="gradcam", layer="nope")
    with pytest.raises(ModelError, match="without a forward"):
        explain(object(), images, method="occlusion")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match=r"logits of shape \(N, classes\)"):
        explain(lambda t: t.sum(), images, method="occlusion")
    with pytest.raises(ConfigError, match="unknown baseline"):
        explain(cnn, images, method="integrated_gradients", baselines="gray")
    with pytest.raises(ConfigError, match="reference"):
        explain(cnn, images, method="integrated_gradients", baselines="mean")
    assert issubclass(ConfigError, XRobustError)


def test_gradcam_named_layer_and_shape(cnn: nn.Module, images: torch.Tensor) -> None:
    last = explain(cnn, images, 0, "gradcam").attributions
    named = explain(cnn, images, 0, "gradcam", layer="conv2").attributions
    first = explain(cnn, images, 0, "gradcam", layer="conv1").attributions
    torch.testing.assert_close(last, named)
    assert not torch.allclose(first, last)
    assert (last >= 0).all()  # the paper's ReLU


def test_baselines(cnn: nn.Module, images: torch.Tensor) -> None:
    from xrobust.explain import blur, resolve_baseline

    x = images
    assert torch.equal(resolve_baseline("zeros", x), torch.zeros_like(x))
    assert torch.equal(resolve_baseline(0.5, x), torch.full_like(x, 0.5))
    b = blur(x)
    assert b.shape == x.shape and b.std() < x.std()
    # blur keeps a constant image and the mean of each image (normalised kernel, reflect pad)
    torch.testing.assert_close(blur(torch.full_like(x, 0.3)), torch.full_like(x, 0.3))
    u = resolve_baseline("uniform", x, bounds=(0.2, 0.4))
    assert u.min() >= 0.2 and u.max() <= 0.4
    assert torch.equal(u, resolve_baseline("uniform", x, bounds=(0.2, 0.4)))
    ref = torch.randn(50, 5)
    torch.testing.assert_close(
        resolve_baseline("mean", torch.zeros(2, 5), reference=ref), ref.mean(0).expand(2, 5)
    )
    # IG completeness holds for every baseline: sum attr = f(x) - f(b)
    for spec in ("blur", "uniform", 0.5):
        e = explain(cnn, x, 0, "integrated_gradients", baselines=spec, n_steps=64)
        cnn.eval()
        with torch.no_grad():
            diff = cnn(x)[:, 0] - cnn(resolve_baseline(spec, x))[:, 0]
        torch.testing.assert_close(e.attributions.sum((1, 2, 3)), diff, rtol=2e-2, atol=1e-3)


def test_memory_budget_chunks_and_matches(cnn: nn.Module) -> None:
    from xrobust.explain.base import _estimate_row_bytes

    cnn.eval()
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    row = _estimate_row_bytes(cnn, x[:1], True)
    # the hooks see conv1 (4x16x16), bn, relu, conv2 (6x8x8), relu, dropout, head (3)
    acts = 4 * (3 * 4 * 16 * 16 + 2 * 6 * 8 * 8 + 6 * 4 * 4 + 3) + 4 * 16 * 16
    assert row == int(acts * 4.0) + 1
    budget_mb = 2 * 3 * row / 2**20  # three rows per pass (live tensors get half the budget)
    full = explain(cnn, x, 0, "integrated_gradients", n_steps=8)
    small = get_explainer("integrated_gradients", cnn, n_steps=8, memory_budget_mb=budget_mb)
    calls: list[int] = []
    hook = cnn.conv1.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    try:
        chunked = small.explain(x, 0)
    finally:
        hook.remove()
    assert max(calls[1:]) <= 3  # the first call is the one-row estimate or the target check
    torch.testing.assert_close(chunked.attributions, full.attributions, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(chunked.delta, full.delta, rtol=1e-3, atol=1e-5)
    for method in ("smoothgrad", "gradient_shap", "occlusion"):
        calls.clear()
        hook = cnn.conv1.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
        try:
            explain(cnn, x, 0, method, seed=0, memory_budget_mb=budget_mb, **FAST.get(method, {}))
        finally:
            hook.remove()
        # forward-only methods keep no activations for a backward pass: more rows fit
        fwd_rows = int(budget_mb * 2**20) // (2 * _estimate_row_bytes(cnn, x[:1], False))
        limit = 3 if EXPLAINERS.get(method).requires_gradients else fwd_rows
        assert max(calls) <= limit, (method, limit, calls)


def test_explain_loader_batches_and_labels(cnn: nn.Module) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.rand(7, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    out = list(explain_loader(cnn, loader, "saliency", target="label"))
    assert [len(e.target) for e in out] == [3, 3, 1]
    assert torch.cat([e.target for e in out]).tolist() == y.tolist()
    whole = explain(cnn, x, y, "saliency").attributions
    torch.testing.assert_close(torch.cat([e.attributions for e in out]), whole)
    with pytest.raises(ConfigError, match="needs batches of"):
        list(explain_loader(cnn, [x], "saliency", target="label"))


def test_explanation_round_trips_json(cnn: nn.Module, images: torch.Tensor) -> None:
    import json

    e = explain(cnn, images, method="integrated_gradients", n_steps=8)
    d = json.loads(json.dumps(e.to_dict()))
    back = Explanation.from_dict(d)
    torch.testing.assert_close(back.attributions, e.attributions)
    assert torch.equal(back.target, e.target) and back.params["n_steps"] == 8
    assert "attributions" not in e.to_dict(include_attributions=False)


def test_registry_declares_gradient_needs() -> None:
    for name, cls in EXPLAINERS.items():
        assert isinstance(cls.requires_gradients, bool), name
        assert cls.name == name
        assert cls.__doc__ and ">>>" in cls.__doc__, f"{name} docstring needs an example"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", list_explainers())
def test_cuda_device_kept(method: str, cnn: nn.Module, images: torch.Tensor) -> None:
    cnn = cnn.cuda()
    x = images.cuda()
    e = explain(cnn, x, method=method, seed=0, **FAST.get(method, {}))
    assert e.attributions.device == x.device and e.target.device == x.device
    cpu = explain(cnn.cpu(), images, e.target.cpu(), method=method, seed=0, **FAST.get(method, {}))
    if method not in STOCHASTIC:
        torch.testing.assert_close(e.attributions.cpu(), cpu.attributions, rtol=1e-3, atol=1e-4)


def test_superpixel_masks(digits28: dict[str, torch.Tensor], digits_cnn: nn.Module) -> None:
    from xrobust.explain._masks import superpixels

    x = digits28["x_test"][:3]
    sp = superpixels(x, n_segments=49)
    assert sp.shape == x.shape and sp.dtype == torch.long
    for i in range(3):  # contiguous ids 0..K-1, K close to what was asked
        ids = sp[i].unique()
        assert torch.equal(ids, torch.arange(len(ids))) and 30 <= len(ids) <= 49
    assert not torch.equal(sp[0], sp[1])  # one segmentation per image
    # two flat halves: no segment straddles the edge
    halves = torch.zeros(1, 1, 8, 8)
    halves[..., 4:] = 1.0
    m = superpixels(halves, n_segments=4)
    assert not set(m[..., :4].unique().tolist()) & set(m[..., 4:].unique().tolist())
    e = explain(digits_cnn, x, method="feature_ablation", feature_mask="superpixels")
    for i in range(3):  # attributions are constant within each superpixel
        for k in sp[i].unique():
            assert len(e.attributions[i][sp[i] == k].unique()) == 1
    with pytest.raises(ConfigError, match="superpixels"):
        explain(_mlp(), torch.rand(2, 5), method="lime", feature_mask="superpixels")
