"""Reduced-precision attack search (``precision="bf16"``/``"fp16"``) with fp32 verdicts.

The search's passes run under autocast; the clean pass, every success and the final
predictions are fp32's. The central case is a model whose reduced-precision forward lies
(it claims every example is fooled): a result may count an example as broken only where
an fp32 forward pass agrees, so these tests fail if the verification were removed.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from xrobust.attacks import Ensemble, get_attack
from xrobust.attacks.context import AttackContext, Batch, Outcome
from xrobust.attacks.norms import get_norm
from xrobust.device import parse_precision, search_dtype
from xrobust.errors import ConfigError

CPU = torch.device("cpu")


class LiesUnderAutocast(nn.Module):
    """A linear classifier whose fp32 answer is robust at small eps (a margin of 8 for
    class 1 against inputs that move its logits by at most 0.1), but whose
    reduced-precision forward adds 100 to class 0: under autocast every example of another
    class looks fooled."""

    def __init__(self, d: int = 16, c: int = 4) -> None:
        super().__init__()
        self.lin = nn.Linear(d, c)
        with torch.no_grad():
            self.lin.weight.copy_(torch.linspace(-0.05, 0.05, d * c).reshape(c, d))
            self.lin.bias.copy_(torch.tensor([0.0, 8.0, 0.0, 0.0][:c]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.lin(x.flatten(1))
        if torch.is_autocast_enabled(x.device.type):
            z = z + 100.0 * nn.functional.one_hot(torch.zeros_like(z[:, 0]).long(), z.shape[1])
        return z


@pytest.fixture(scope="module")
def lying() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = LiesUnderAutocast().eval()
    x = torch.rand(12, 16)
    y = torch.ones(12, dtype=torch.long)
    return model, x, y


def test_the_lying_model_lies_only_under_autocast(lying) -> None:
    # the premise of the verification tests: fp32 says class 1 everywhere in the ball,
    # bf16 says class 0 (a "success") everywhere
    model, x, y = lying
    with torch.no_grad():
        assert torch.equal(model(x).argmax(1), y)
        assert torch.equal(model((x + 0.05).clamp(0, 1)).argmax(1), y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert bool((model(x).argmax(1) == 0).all())


@pytest.mark.parametrize("name", ["pgd", "apgd", "apgd_t", "fgsm", "square"])
def test_a_reduced_precision_success_fp32_rejects_is_not_counted(lying, name) -> None:
    model, x, y = lying
    kw = {"fgsm": {}, "square": {"queries": 20}}.get(name, {"steps": 5})
    if name == "apgd_t":
        kw["n_target_classes"] = 2
    ref = get_attack(name, model, eps=0.05, seed=0, bounds=(0.0, 1.0), **kw).run(x, y)
    res = get_attack(name, model, eps=0.05, seed=0, bounds=(0.0, 1.0), precision="bf16", **kw)
    res = res.run(x, y)
    assert res.precision == "bf16" and ref.precision == "fp32"
    with torch.no_grad():
        truth = model(res.x_adv).argmax(1)
    assert torch.equal(res.pred_adv, truth)
    assert not bool(res.success.any())  # fp32 confirms none of bf16's claims
    assert res.robust_accuracy == 1.0 == ref.robust_accuracy
    assert res.to_dict()["precision"] == "bf16"
    if name != "fgsm":  # (FGSM's one step does not reach the lie's verdicts)
        assert res.config["verification"]["rejected"] > 0  # the lie was seen and refused


def test_boundary_attacks_search_in_fp32_even_inside_a_reduced_precision_ensemble(lying) -> None:
    model, x, y = lying
    for name, kw in (("fab", {"steps": 3}), ("hop_skip_jump", {"queries": 40})):
        res = get_attack(name, model, eps=0.05, seed=0, precision="bf16", **kw).run(x, y)
        assert res.precision == "fp32" and "verification" not in res.config
    ens = Ensemble(model, attacks=("apgd", "fab_t"), eps=0.05, steps=3, n_target_classes=2,
                   seed=0, precision="bf16")  # fmt: skip
    seen: list[bool] = []
    hook = model.register_forward_hook(
        lambda m, i, o: seen.append(torch.is_autocast_enabled("cpu"))
    )
    try:
        members = {m["attack"]: m for m in ens.run(x, y).config["members"]}
    finally:
        hook.remove()
    assert members["apgd"]["precision"] == "bf16" and members["fab_t"]["precision"] == "fp32"
    # apgd's search passes ran under bf16 autocast, the verdicts (and fab_t) in fp32
    assert any(seen), "no forward pass of the ensemble ran under bf16 autocast"
    assert not all(seen), "no forward pass of the ensemble ran in fp32"


def test_the_search_goes_on_after_a_rejected_candidate(lying) -> None:
    # evaluation mode retires a row only when fp32 confirms: the rejected rows get every
    # step, as in fp32 (a row retired on bf16's word would stop at the first step)
    model, x, y = lying
    res = get_attack("pgd", model, eps=0.05, steps=6, seed=0, precision="bf16").run(x, y)
    assert res.steps.tolist() == [6] * len(x)


def test_an_ensemble_counts_only_fp32_verdicts(lying) -> None:
    model, x, y = lying
    ens = Ensemble(model, eps=0.05, steps=4, n_target_classes=2, seed=0, precision="bf16")
    res = ens.run(x, y)
    assert not bool(res.success.any()) and res.robust_accuracy == 1.0
    assert res.broken_by == [None] * len(x)
    assert all(m["broken"] == 0 for m in res.config["members"] if "broken" in m)
    assert {m.config.precision for m in ens.members()} == {"bf16"}


def test_real_successes_still_count_and_agree_with_fp32() -> None:
    # an honest model: bf16 search with fp32 verdicts breaks what fp32 breaks, give or
    # take an example, and its verdicts are fp32's at its own adversarials
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    x = torch.rand(64, 16)
    with torch.no_grad():
        y = model(x).argmax(1)
    kw = dict(eps=0.15, steps=20, seed=0)
    ref = get_attack("apgd", model, **kw).run(x, y)
    res = get_attack("apgd", model, precision="bf16", **kw).run(x, y)
    with torch.no_grad():
        assert torch.equal(res.pred_adv, model(res.x_adv).argmax(1))
    assert torch.equal(res.success, res.pred_adv != y)
    assert 0 < int(res.success.sum()) < len(x)
    assert abs(int(res.success.sum()) - int(ref.success.sum())) <= 1


def test_verify_gives_fp32_predictions_and_margins(lying) -> None:
    model, x, y = lying
    norm = get_norm("linf")
    eps = torch.full((len(x),), 0.05)
    batch = Batch.of(x, y, eps, torch.ones(len(x), dtype=torch.bool), norm, (0.0, 1.0))
    gen = torch.Generator().manual_seed(0)
    ctx = AttackContext(model, CPU, torch.bfloat16, gen, torch.float32, False, len(x))
    out = Outcome.unchanged(x)
    out.pred[:] = 0  # what a bf16 pass claimed
    out = ctx.verify(out, batch)
    with torch.no_grad():
        z = model(x)
    assert torch.equal(out.pred, z.argmax(1))
    other = z.clone()
    other[:, 1] = -float("inf")
    assert out.loss is not None
    assert torch.allclose(out.loss, other.max(1).values - z[:, 1])
    assert ctx.rejected == len(x) and ctx.verified == len(x)
    # fp32: a no-op (results unchanged, bit for bit)
    ctx32 = AttackContext(model, CPU, None, gen, torch.float32, False, len(x))
    same = Outcome.unchanged(x)
    assert ctx32.verify(same, batch) is same and int(same.pred.max()) == -1


def test_fp32_runs_no_autocast_and_no_extra_pass(lying) -> None:
    model, x, y = lying
    seen: list[bool] = []
    hook = model.register_forward_hook(
        lambda m, i, o: seen.append(torch.is_autocast_enabled("cpu"))
    )
    try:
        a = get_attack("pgd", model, eps=0.05, steps=3, seed=0).run(x, y)
        b = get_attack("pgd", model, eps=0.05, steps=3, seed=0, precision="fp32").run(x, y)
    finally:
        hook.remove()
    assert not any(seen) and "verification" not in a.config
    assert torch.equal(a.x_adv, b.x_adv) and a.forward_passes == b.forward_passes


# ------------------------------------------------------------------ options


@pytest.mark.parametrize(
    ("value", "name"),
    [("fp32", "fp32"), ("BF16", "bf16"), ("bfloat16", "bf16"), ("half", "fp16"), (None, "fp32"),
     (torch.float16, "fp16"), (torch.float32, "fp32")],
)  # fmt: skip
def test_parse_precision(value, name) -> None:
    assert parse_precision(value) == name


def test_bad_precision_and_both_options_are_refused(lying) -> None:
    model = lying[0]
    with pytest.raises(ConfigError, match="expected 'fp32', 'bf16' or 'fp16'"):
        get_attack("pgd", model, eps=0.1, precision="int8")
    with pytest.raises(ConfigError, match="not both"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        get_attack("pgd", model, eps=0.1, precision="bf16", amp=True)


def test_amp_is_a_deprecated_alias_that_keeps_its_cpu_meaning(lying) -> None:
    model, x, y = lying
    with pytest.warns(DeprecationWarning, match="precision="):
        atk = get_attack("pgd", model, eps=0.05, steps=2, amp=True)
    assert atk.run(x, y).precision == "fp32"  # amp was CUDA-only: ignored on a CPU
    assert search_dtype(CPU, "fp32", True) is None
    assert search_dtype(CPU, "bf16") is torch.bfloat16


@pytest.fixture(scope="module")
def run_mlp(tmp_path_factory):
    from xrobust.cli import main

    out = tmp_path_factory.mktemp("precision") / "run"
    argv = ["train", "--data", "digits", "--model", "mlp", "--epochs", "1", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_cli_attack_records_precision(run_mlp, capsys) -> None:
    from xrobust.cli import main

    rc = main(["attack", "--model", str(run_mlp), "--attack", "pgd", "--eps", "0.1",
               "--steps", "2", "--limit", "16", "--device", "cpu", "--precision", "bf16",
               "--json", "--no-progress"])  # fmt: skip
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["precision"] == "bf16" and summary["config"]["precision"] == "bf16"
    assert "verification" in summary["config"]


def test_cli_attack_refuses_a_bad_precision_and_amp_on_cpu(run_mlp, capsys) -> None:
    from xrobust.cli import main

    assert main(["attack", "--model", str(run_mlp), "--eps", "0.1", "--precision", "int8"]) == 2
    assert "--precision: invalid choice: 'int8'" in capsys.readouterr().err
    assert (
        main(["attack", "--model", str(run_mlp), "--eps", "0.1", "--amp", "--device", "cpu"]) == 2
    )
    assert "--amp needs a CUDA device" in capsys.readouterr().err


def test_audit_config_and_cli_take_precision(tmp_path) -> None:
    from xrobust.audit import AuditConfig, load_config
    from xrobust.cli import build_parser
    from xrobust.cli.audit import build_config

    toml = tmp_path / "a.toml"
    toml.write_text('precision = "bfloat16"\n')
    assert load_config(toml).precision == "bf16"
    with pytest.raises(ConfigError, match="precision"):
        AuditConfig(precision="fp8")
    args = build_parser().parse_args(["audit", "--config", str(toml), "--precision", "fp16"])
    assert build_config(args).precision == "fp16"
    args = build_parser().parse_args(["audit", "--config", str(toml)])
    assert build_config(args).precision == "bf16"


def test_audit_report_records_each_attacks_precision(tmp_path) -> None:
    from xrobust.audit import AuditConfig, audit
    from xrobust.audit.validate import validate_report
    from xrobust.data import load_dataset
    from xrobust.models import build_model

    ds = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("small_cnn", ds.spec).eval()
    cfg = AuditConfig.from_dict(
        {
            "precision": "bf16",
            "adversarial": {"n": 16, "attacks": ["fgsm", "pgd"], "norms": ["linf"],
                            "eps": {"linf": [0.1]}, "steps": 2, "minimal_perturbation": False},
            "clean": {"n": 16},
            "corruption": {"enabled": False},
            "explanations": {"enabled": False},
            "sanity": {"enabled": False},
        }
    )  # fmt: skip
    report = audit(model, ds, cfg)
    d = json.loads(json.dumps(report.to_dict()))
    validate_report(d)
    results = d["sections"]["adversarial"]["data"]["norms"]["linf"]["results"]
    assert {r["precision"] for rs in results.values() for r in rs} == {"bf16"}
    assert d["config"]["precision"] == "bf16"


# ------------------------------------------------------------------ CUDA


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_reduced_precision_verdicts_are_fp32(lying, precision) -> None:
    model, x, y = lying
    import copy

    m = copy.deepcopy(model).cuda()
    res = get_attack("apgd", m, eps=0.05, steps=5, seed=0, precision=precision).run(
        x.cuda(), y.cuda()
    )
    assert res.precision == precision and res.x_adv.device.type == "cuda"
    assert not bool(res.success.any()) and res.robust_accuracy == 1.0
    assert res.config["verification"]["rejected"] > 0
