"""Contract tests: every registered attack keeps every invariant of the Attack API."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from xrobust.attacks import ATTACKS, AttackResult, AttackWarning, get_attack, list_attacks
from xrobust.attacks.guide import MIFGSM
from xrobust.errors import ConfigError, DataError, ModelError

N = 48
#: the example attack of xrobust.attacks.guide, registered for these tests only
GUIDE = MIFGSM.name


@pytest.fixture(autouse=True)
def _guide_attack_registered():
    """Register the guide's attack around each test, so that it passes every contract."""
    if GUIDE in ATTACKS:
        yield
        return
    ATTACKS.register(GUIDE)(MIFGSM)
    try:
        yield
    finally:
        ATTACKS.unregister(GUIDE)


def _cls(name: str):
    return MIFGSM if name == GUIDE else ATTACKS.get(name)


#: the transfer attack's surrogate: the contract model itself (set by a fixture)
_SURROGATE: dict = {}


@pytest.fixture(autouse=True)
def _surrogate(digits_cnn):
    _SURROGATE["model"] = digits_cnn
    yield


def small_kwargs(name: str) -> dict:
    """Cheap settings per attack so the whole contract suite stays fast."""
    kw: dict = {}
    if name == "transfer":
        kw["surrogate"] = _SURROGATE["model"]
        kw["attack_options"] = {"steps": 4}
    if name in ("pgd", "apgd", "apgd_t", "ensemble", "fab", "fab_t"):
        kw["steps"] = 4
    if name in ("apgd_t", "ensemble", "fab_t"):
        kw["n_target_classes"] = 2
    if name == "square":
        kw["queries"] = 60
    if name == "hop_skip_jump":
        kw.update(queries=100, init_evals=20)
    return kw


def hurting_kwargs(name: str) -> dict:
    """Settings for the tests that assert a drop in accuracy: query-only attacks get a
    few more queries than ``small_kwargs`` gives them."""
    kw = small_kwargs(name)
    if name == "square":
        kw["queries"] = 150
    if name == "hop_skip_jump":
        kw["queries"] = 200
    return kw


#: radii of test_invariants for the query-only attacks, where a cheap budget does not
#: reach the white-box radii (linf 0.1, l2 1.5) often enough for a 20-point drop: Square
#: L2 needs ~1,000 queries at 1.5, HopSkipJump (a minimum-norm search) thousands. Every
#: invariant asserted is the same; only the threat model is larger.
QUERY_EPS = {"square": {"l2": 3.0}, "hop_skip_jump": {"linf": 0.3, "l2": 4.0}}


def contract_eps(name: str, norm: str, eps: float) -> float:
    return QUERY_EPS.get(name, {}).get(norm, eps)


def targeted_kwargs(name: str) -> dict:
    """HopSkipJump needs a few hundred queries more to reach a target within linf 0.3."""
    kw = hurting_kwargs(name)
    if name == "hop_skip_jump":
        kw["queries"] = 600
    return kw


@pytest.fixture(scope="module")
def batch(digits28: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return digits28["x_test"][:N].clone(), digits28["y_test"][:N].clone()


ALL = [*list_attacks(), GUIDE]


def test_registry_lists_the_attacks() -> None:
    assert {"fgsm", "pgd", "apgd", "apgd_t", "fab", "fab_t", "ensemble", "square", "hop_skip_jump"} <= set(ALL)
    assert {"square", "hop_skip_jump", "transfer"} <= set(list_attacks(requires_gradients=False))
    assert GUIDE in list_attacks()  # the guide's attack, registered by the fixture
    assert get_attack("apgd-t", nn.Linear(2, 4), eps=0.1).name == "apgd_t"
    with pytest.raises(ConfigError, match="Did you mean"):
        get_attack("pgdd", nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="no option"):
        get_attack("fgsm", nn.Linear(2, 2), eps=0.1, steps=3)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.5)])
@pytest.mark.parametrize("early_stop", [True, False])
def test_invariants(digits_cnn, batch, name, norm, eps, early_stop) -> None:
    x, y = batch
    model = digits_cnn
    eps = contract_eps(name, norm, eps)
    x0 = x.clone()
    params_before = [p.detach().clone() for p in model.parameters()]
    flags = [p.requires_grad for p in model.parameters()]
    atk = get_attack(
        name, model, eps=eps, norm=norm, seed=0, early_stop=early_stop, **hurting_kwargs(name)
    )
    res = atk.run(x, y)
    assert isinstance(res, AttackResult)
    # input untouched, shape/dtype/device kept
    assert torch.equal(x, x0)
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert res.x_adv.device == x.device
    # eps-ball and bounds
    delta = (res.x_adv - x).flatten(1)
    n = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert float(n.max()) <= eps * (1 + 1e-5) + 1e-6
    assert torch.allclose(res.norms, n, atol=1e-6)
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    # model untouched
    assert not model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(params_before, model.parameters()))
    # reported predictions are the model's
    with torch.no_grad():
        assert torch.equal(res.pred_adv, model(res.x_adv).argmax(1))
        assert torch.equal(res.pred_clean, model(x).argmax(1))
    assert torch.equal(res.success, res.pred_adv != y)
    # the attack hurts
    assert res.robust_accuracy < res.clean_accuracy - 0.2
    # evaluation mode does not attack examples already misclassified
    if early_stop:
        assert torch.equal(res.attacked, res.pred_clean == y)
        assert torch.equal(res.x_adv[~res.attacked], x[~res.attacked])
    d = res.to_dict()
    assert d["attack"] == name and d["n"] == N and 0 <= d["robust_accuracy"] <= 1


@pytest.mark.parametrize("name", ALL)
def test_deterministic_under_seed(digits_cnn, batch, name) -> None:
    x, y = batch
    kw = dict(eps=0.1, **small_kwargs(name))
    a = get_attack(name, digits_cnn, seed=3, **kw).run(x, y)
    b = get_attack(name, digits_cnn, seed=3, **kw).run(x, y)
    assert torch.equal(a.x_adv, b.x_adv)
    torch.manual_seed(11)
    c = get_attack(name, digits_cnn, **kw).run(x, y)
    torch.manual_seed(11)
    d = get_attack(name, digits_cnn, **kw).run(x, y)
    assert torch.equal(c.x_adv, d.x_adv)


@pytest.mark.parametrize("name", ALL)
def test_train_mode_restored_with_warning(digits_cnn, batch, name) -> None:
    x, y = batch
    model = nn.Sequential(nn.Dropout(0.5), digits_cnn)
    model.train()
    digits_cnn.eval()  # mixed modes must come back exactly as they were
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    try:
        with pytest.warns(AttackWarning, match="train mode"):
            get_attack(name, model, eps=0.1, seed=0, **small_kwargs(name)).run(x[:8], y[:8])
        assert model.training and model[0].training and not digits_cnn.training
        assert not frozen.requires_grad
        assert all(p.requires_grad for p in list(model.parameters())[1:])
        assert all(p.grad is None for p in model.parameters())
    finally:
        frozen.requires_grad_(True)
        model.eval()


@pytest.mark.parametrize("name", ALL)
def test_float64_inputs_keep_dtype(digits_cnn, batch, name) -> None:
    x, y = batch
    res = get_attack(name, digits_cnn, eps=0.1, seed=0, **small_kwargs(name)).run(
        x[:8].double(), y[:8]
    )
    assert res.x_adv.dtype == torch.float64
    assert float((res.x_adv - x[:8].double()).abs().max()) <= 0.1 + 1e-9


@pytest.mark.parametrize("name", ALL)
def test_run_loader_matches_batches(digits_cnn, batch, name) -> None:
    x, y = batch
    atk = get_attack(name, digits_cnn, eps=0.1, seed=0, **small_kwargs(name))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    res = atk.run_loader(loader)
    assert res.x_adv is None and res.n == N
    parts = [
        atk.run(x[i : i + 16], y[i : i + 16], batch_index=i // 16)
        for i in range(0, N, 16)
    ]
    assert torch.equal(res.pred_adv, torch.cat([p.pred_adv for p in parts]))
    kept = atk.run_loader(TensorDataset(x, y), batch_size=16, keep_adv=True, limit=40)
    assert kept.x_adv is not None and kept.x_adv.shape == (40, *x.shape[1:])
    assert torch.equal(kept.pred_adv, res.pred_adv[:40])


@pytest.mark.parametrize("name", ALL)
def test_eval_mode_never_more_robust_than_fixed_budget(digits_cnn, batch, name) -> None:
    x, y = batch
    kw = dict(eps=0.08, seed=5, **small_kwargs(name))
    ev = get_attack(name, digits_cnn, early_stop=True, **kw).run(x, y)
    fx = get_attack(name, digits_cnn, early_stop=False, **kw).run(x, y)
    assert ev.robust_accuracy <= fx.robust_accuracy + 1e-9
    assert ev.gradient_passes <= fx.gradient_passes


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n == "hop_skip_jump" else n
        for n in ALL
        if _cls(n).supports_targeted
    ],
)
def test_targeted(digits_cnn, batch, name) -> None:
    x, y = batch
    target = (y + 1) % 10
    res = get_attack(name, digits_cnn, eps=0.3, seed=0, **targeted_kwargs(name)).run(
        x, y, target=target
    )
    assert torch.equal(res.success, res.pred_adv == target)
    assert res.success.float().mean() > 0.3
    assert torch.equal(res.target, target)


@pytest.mark.parametrize("name", ALL)
def test_bad_inputs_raise_clear_errors(digits_cnn, batch, name) -> None:
    x, y = batch
    kw = small_kwargs(name)
    with pytest.raises(ConfigError, match="eps"):
        get_attack(name, digits_cnn, eps=-0.1, **kw)
    with pytest.raises(ConfigError, match="larger than the bounds allow"):
        get_attack(name, digits_cnn, eps=1.5, **kw)
    with pytest.raises(ConfigError, match="larger than the bounds allow"):
        get_attack(name, digits_cnn, eps=100.0, norm="l2", **kw).run(x, y)
    with pytest.raises(ConfigError, match="unknown norm"):
        get_attack(name, digits_cnn, eps=0.1, norm="l3", **kw)
    atk = get_attack(name, digits_cnn, eps=0.1, **kw)
    with pytest.raises(DataError, match="outside the attack's bounds"):
        atk.run(x * 3, y)
    with pytest.raises(DataError, match="NaN"):
        atk.run(torch.full_like(x, float("nan")), y)
    with pytest.raises(DataError, match="labels must have shape"):
        atk.run(x, y[:-1])
    with pytest.raises(DataError, match="labels go up to"):
        atk.run(x, y + 10)
    with pytest.raises(ModelError, match="logits of shape"):
        one = nn.Sequential(nn.Flatten(), nn.Linear(784, 1), nn.Flatten(0)).eval()
        get_attack(name, one, eps=0.1, **kw).run(x[:2], y[:2])


def test_steps_must_be_positive(digits_cnn) -> None:
    for name in ("pgd", "apgd", "apgd_t", "fab", "fab_t", "ensemble", GUIDE):
        with pytest.raises(ConfigError, match="steps"):
            get_attack(name, digits_cnn, eps=0.1, steps=0)


def test_probability_outputs_warn(digits_cnn, batch) -> None:
    x, y = batch
    model = nn.Sequential(digits_cnn, nn.Softmax(dim=1))
    with pytest.warns(AttackWarning, match="probabilities"):
        get_attack("fgsm", model, eps=0.1).run(x[:8], y[:8])


def test_zero_gradients_warn(batch) -> None:
    x, _y = batch

    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b = nn.Parameter(torch.tensor([0.0, 5.0, -1.0]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b.expand(x.shape[0], 3) + 0 * x.flatten(1).sum(1, keepdim=True)

    with pytest.warns(AttackWarning, match="zero"):
        get_attack("pgd", Flat(), eps=0.1, steps=2, early_stop=False).run(
            x[:4], torch.ones(4, dtype=torch.long)
        )


def test_no_warning_for_healthy_model(digits_cnn, batch) -> None:
    x, y = batch
    with warnings.catch_warnings():
        warnings.simplefilter("error", AttackWarning)
        get_attack("pgd", digits_cnn, eps=0.1, steps=2).run(x, y)


def test_tabular_model_and_few_classes(tabular_mlp, breast_cancer) -> None:
    x, y = breast_cancer["x_test"][:32], breast_cancer["y_test"][:32]
    res = get_attack("ensemble", tabular_mlp, eps=0.5, bounds=None, steps=5, seed=0).run(x, y)
    assert res.robust_accuracy < res.clean_accuracy
    assert set(res.to_dict()["broken_by"]) <= {"apgd"}  # APGD-T needs 4 classes: skipped
    with pytest.raises(ModelError, match="at least 4 classes"):
        get_attack("apgd_t", tabular_mlp, eps=0.5, bounds=None).run(x, y)


def test_eps_zero_is_identity(digits_cnn, batch) -> None:
    x, y = batch
    res = get_attack("pgd", digits_cnn, eps=0.0, steps=3).run(x, y)
    assert torch.equal(res.x_adv, x) and res.robust_accuracy == res.clean_accuracy


def test_restarts_never_weaker(digits_cnn, batch) -> None:
    x, y = batch
    one = get_attack("pgd", digits_cnn, eps=0.08, steps=5, seed=1).run(x, y)
    three = get_attack("pgd", digits_cnn, eps=0.08, steps=5, restarts=3, seed=1).run(x, y)
    assert three.robust_accuracy <= one.robust_accuracy
    fixed3 = get_attack(
        "pgd", digits_cnn, eps=0.08, steps=5, restarts=3, seed=1, early_stop=False
    ).run(x, y)
    assert float(fixed3.norms.max()) <= 0.08 + 1e-6


def test_margin_loss_attacks(digits_cnn, batch) -> None:
    x, y = batch
    res = get_attack("pgd", digits_cnn, eps=0.1, steps=10, loss="margin", seed=0).run(x, y)
    assert res.robust_accuracy < res.clean_accuracy - 0.3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ALL)
def test_cuda_amp(digits_cnn, batch, name) -> None:
    import copy

    x, y = batch
    model = copy.deepcopy(digits_cnn).cuda()
    ref = get_attack(name, model, eps=0.1, seed=0, **small_kwargs(name)).run(x.cuda(), y.cuda())
    res = get_attack(name, model, eps=0.1, seed=0, amp="bf16", **small_kwargs(name)).run(
        x.cuda(), y.cuda()
    )
    assert res.x_adv.device.type == "cuda" and res.x_adv.dtype == torch.float32
    assert float((res.x_adv - x.cuda()).abs().max()) <= 0.1 + 1e-6
    assert abs(res.robust_accuracy - ref.robust_accuracy) <= 0.1


def test_no_zero_gradient_false_alarm_in_evaluation_mode(digits_cnn, batch) -> None:
    # most labels wrong: those rows are skipped, so their zero gradients must not count
    x, y = batch
    y_bad = y.clone()
    y_bad[:36] = (y[:36] + 1) % 10
    with warnings.catch_warnings():
        warnings.simplefilter("error", AttackWarning)
        for kw in (dict(random_start=False), dict(random_start=True)):
            get_attack("pgd", digits_cnn, eps=0.3, steps=3, seed=0, **kw).run(x, y_bad)
        get_attack("fgsm", digits_cnn, eps=0.3).run(x, y_bad)


def test_each_iterate_is_evaluated_once(digits_cnn, batch) -> None:
    # the pass accounting behind the evaluation-mode speed: the clean forward's graph gives
    # the first gradient (first run from x), a fooled example's prediction comes from the
    # pass that found it, and only the survivors' last iterates get a final forward
    x, y = batch
    n, kw = len(x), dict(eps=0.1, steps=10, step_size=0.025)
    ev = get_attack("pgd", digits_cnn, **kw).run(x, y)
    assert 0 < int(ev.success.sum()) < int(ev.attacked.sum())  # both kinds of example occur
    assert ev.forward_passes == n + int(ev.steps.sum())
    rs = get_attack("pgd", digits_cnn, random_start=True, seed=0, **kw).run(x, y)
    assert rs.forward_passes == n + int(rs.steps.sum()) + int(rs.attacked.sum())
    fixed = get_attack("pgd", digits_cnn, early_stop=False, **kw).run(x, y)
    assert fixed.forward_passes == n * (1 + kw["steps"])
    apgd = get_attack("apgd", digits_cnn, eps=0.1, steps=10, seed=0).run(x, y)
    assert torch.equal(apgd.pred_adv, digits_cnn(apgd.x_adv).argmax(1))


@pytest.mark.parametrize("name", ALL)
def test_mixed_precision_path_on_cpu_autocast(digits_cnn, batch, name) -> None:
    # reduced precision (search passes under autocast, perturbation maths in fp32, verdicts
    # in fp32) on the CPU; CUDA's runs in the gpu tests
    seen: list[torch.dtype] = []
    conv = next(m for m in digits_cnn.modules() if isinstance(m, torch.nn.Conv2d))
    hook = conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        x, y = batch
        ref = get_attack(name, digits_cnn, eps=0.1, seed=0, **small_kwargs(name)).run(x, y)
        seen.clear()
        res = get_attack(
            name, digits_cnn, eps=0.1, seed=0, precision="bf16", **small_kwargs(name)
        ).run(x, y)
    finally:
        hook.remove()
    if _cls(name).reduced_precision_search:
        assert torch.bfloat16 in seen and set(seen) <= {torch.bfloat16, torch.float32}
        assert res.precision == "bf16"
    else:  # boundary attacks (FAB, HopSkipJump) always search in fp32
        assert set(seen) == {torch.float32} and res.precision == "fp32"
    assert torch.equal(res.pred_adv, digits_cnn(res.x_adv).argmax(1))  # fp32 verdicts
    assert res.x_adv.dtype == torch.float32 and res.x_adv.device == x.device
    assert float((res.x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    assert all(p.grad is None for p in digits_cnn.parameters())
    assert torch.equal(res.success, res.pred_adv != y)
    assert abs(res.robust_accuracy - ref.robust_accuracy) <= 0.1


def test_guide_attack_equals_torchattacks_mifgsm(digits_cnn, batch) -> None:
    ta = pytest.importorskip("torchattacks")
    import copy

    x, y = batch
    model = copy.deepcopy(digits_cnn)
    ours = MIFGSM(model, eps=0.1, step_size=0.02, steps=8, early_stop=False).run(x, y)
    ref = ta.MIFGSM(model, eps=0.1, alpha=0.02, steps=8, decay=1.0)(x, y)
    diff = (ours.x_adv - ref).abs()
    # identical up to float noise, except where a gradient entry within rounding of zero
    # takes the other sign: such a pixel moves one step the other way (seen once in 10^5)
    assert float((diff > 1e-5).float().mean()) < 1e-3
    assert float(diff.max()) <= 2 * 0.02 + 1e-5
    ev = MIFGSM(model, eps=0.1, step_size=0.02, steps=8).run(x, y)
    assert ev.robust_accuracy <= ours.robust_accuracy
