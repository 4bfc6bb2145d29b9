"""Adversarial training objectives (PGD-AT, fast FGSM-AT, TRADES) and their effect."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from xrobust.attacks import PGD
from xrobust.trainer.adversarial import adversarial_loss


def _cfg(method: str, **kw) -> SimpleNamespace:
    base = dict(
        adversarial=method,
        adv_eps=0.1,
        adv_norm="linf",
        adv_steps=3,
        adv_step_size=None,
        trades_beta=6.0,
    )
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("method", ["pgd", "fgsm", "trades"])
@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
def test_adversarial_loss_contract(digits28, method, norm, eps) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Dropout(0.1), nn.Linear(32, 10))
    model.train()
    model[1].weight.requires_grad_(False)  # a frozen layer stays frozen
    x, y = digits28["x_train"][:32], digits28["y_train"][:32]
    out = adversarial_loss(
        model,
        x,
        y,
        _cfg(method, adv_norm=norm, adv_eps=eps),
        bounds=(0.0, 1.0),
        criterion=nn.CrossEntropyLoss(),
    )
    # mode and flags restored, nothing accumulated on the weights during generation
    assert model.training and all(m.training for m in model.modules())
    assert not model[1].weight.requires_grad and model[3].weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    delta = (out.x_adv - x).flatten(1)
    n = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert float(n.max()) <= eps + 1e-5
    assert float(out.x_adv.min()) >= 0 and float(out.x_adv.max()) <= 1
    assert out.loss.requires_grad and out.loss.dim() == 0
    assert not out.adv_logits.requires_grad and out.adv_logits.shape == (32, 10)
    assert out.clean_logits is not None and not out.clean_logits.requires_grad
    out.loss.backward()
    assert model[3].weight.grad is not None and model[1].weight.grad is None
    # the adversarial batch is harder than the clean one
    with torch.no_grad():
        model.eval()
        ce = nn.functional.cross_entropy
        assert float(ce(model(out.x_adv), y)) > float(ce(model(x), y))


def test_trades_loss_is_ce_plus_beta_kl(digits28) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).train()
    x, y = digits28["x_train"][:16], digits28["y_train"][:16]
    zero = adversarial_loss(model, x, y, _cfg("trades", trades_beta=0.0), bounds=(0, 1))
    assert torch.allclose(zero.loss, nn.functional.cross_entropy(model(x), y), atol=1e-6)


def test_unknown_method_is_a_clear_error(digits28) -> None:
    from xrobust.errors import ConfigError

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(ConfigError, match="adversarial training method"):
        adversarial_loss(
            model, digits28["x_train"][:2], digits28["y_train"][:2], _cfg("mart"), bounds=(0, 1)
        )


@pytest.mark.slow
def test_pgd_at_small_cnn_is_robust_on_digits() -> None:
    """PGD-AT through the Trainer: >= 90% clean and >= 60% PGD-20 accuracy at eps 0.1,
    far above the standard model (which keeps about a third at eps 0.1 and ~0 at 0.2)."""
    pytest.importorskip("xrobust.trainer")
    from xrobust.data import as_tensors, load_dataset
    from xrobust.trainer import TrainConfig, train

    ds = load_dataset("digits")
    x, y = as_tensors(ds.test)
    cfg = dict(epochs=6, device="cpu", adv_eps=0.1, adv_steps=3, seed=0)
    robust_model, _ = train(ds, "small_cnn", TrainConfig(adversarial="pgd", **cfg), progress=False)
    std_model, _ = train(ds, "small_cnn", TrainConfig(**cfg), progress=False)
    at = PGD(robust_model, eps=0.1, steps=20, seed=0).run(x, y)
    st = PGD(std_model, eps=0.1, steps=20, seed=0).run(x, y)
    st2 = PGD(std_model, eps=0.2, steps=20, seed=0).run(x, y)
    assert at.clean_accuracy >= 0.90
    assert at.robust_accuracy >= 0.60
    assert st.clean_accuracy >= 0.90
    assert st.robust_accuracy <= at.robust_accuracy - 0.2
    assert st2.robust_accuracy < 0.10


@pytest.mark.parametrize("method", ["pgd", "fgsm", "trades"])
def test_adversarial_resume_reaches_the_same_weights(tmp_path, method) -> None:
    """The attack's random starts are drawn from a seed taken from torch's global RNG,
    which the resumable state carries: a crashed and resumed adversarial run ends with
    the uninterrupted run's weights, bit for bit."""
    from xrobust.trainer import TrainConfig, Trainer

    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 8, generator=g)
    y = (x[:, 0] > x[:, 1]).long()
    cfg = TrainConfig(
        epochs=2, batch_size=16, device="cpu", lr=0.01, adversarial=method, adv_eps=0.05,
        adv_steps=2, checkpoint_every_steps=2,
    )  # fmt: skip

    def model(seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))

    data = torch.utils.data.TensorDataset(x, y)

    def crash(stage: str, done: int, total: int) -> None:  # after step 3 of epoch 2
        if stage.startswith("epoch 2/") and done == 3:
            raise RuntimeError("simulated crash")

    ref = model()
    Trainer(ref, cfg).fit(data, progress=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(model(), cfg).fit(data, out_dir=tmp_path, progress=crash)
    fresh = model(seed=99)  # another init: everything must come from the state
    hist = Trainer(fresh, cfg).fit(data, out_dir=tmp_path, resume=True, progress=False)
    assert hist.resumed_from == (1, 2)
    for (k, a), b in zip(ref.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
