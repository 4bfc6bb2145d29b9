"""The audit's attacks: per-attack options passed through and validated, and the worst
case at least as strong as the AutoAttack-style ensemble alone on the same examples."""

from __future__ import annotations

import warnings

import pytest
import torch
from test_audit_report import digits_bundle

from xrobust.attacks import get_attack
from xrobust.audit import AuditConfig, audit, load_config
from xrobust.audit.config import AdversarialConfig
from xrobust.errors import ConfigError


def test_default_attacks_end_with_the_reference_ensemble() -> None:
    a = AdversarialConfig()
    assert a.attacks[-1] == "ensemble"
    ens = get_attack("ensemble", torch.nn.Linear(2, 10), eps=0.1, **a.options.get("ensemble", {}))
    assert (ens.config.steps, ens.config.n_target_classes) == (100, 9)  # AutoAttack's APGD part


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pgd": {"stepz": 3}}, r"adversarial\.options\.pgd: .*Did you mean 'steps'"),
        ({"pgd": {"steps": "many"}}, r"option 'steps' of attack 'pgd' must be"),
        ({"ensemble": {"n_target_classes": 2.5}}, r"'n_target_classes'.*must be"),
        ({"pgdd": {"steps": 3}}, r"Did you mean 'pgd'"),
        ({"pgd": 3}, r"table of tables"),
    ],
)
def test_bad_attack_options_are_refused(options, message) -> None:
    with pytest.raises(ConfigError, match=message):
        AuditConfig.from_dict({"adversarial": {"options": options}})


def test_options_from_toml_and_the_old_apgd_steps_key(tmp_path) -> None:
    p = tmp_path / "audit.toml"
    p.write_text("[adversarial.options.pgd]\nsteps = 7\nrandom_start = true\n")
    assert load_config(p).adversarial.options == {"pgd": {"steps": 7, "random_start": True}}
    p.write_text("[adversarial.options.pgd]\nstep = 7\n")
    with pytest.raises(ConfigError, match="Did you mean 'steps'"):
        load_config(p)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = AuditConfig.from_dict({"adversarial": {"apgd_steps": 30}})
    assert cfg.adversarial.options == {"apgd": {"steps": 30}}
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)


def test_worst_case_is_no_higher_than_the_ensemble_alone(digits28, digits_cnn) -> None:
    """The report's worst case includes the reference ensemble, run with the seed the
    report records: rerunning the ensemble alone on the same examples gives the same
    robust accuracy, and the worst case is at most that."""
    cfg = AuditConfig.from_dict(
        {
            "batch_size": 64,
            "adversarial": {
                "n": 64,
                "norms": ["linf"],
                "eps": {"linf": [0.1]},
                "minimal_perturbation": False,
            },
            "clean": {"n": 64},
            "corruption": {"enabled": False},
            "explanations": {"enabled": False},
            "sanity": {"enabled": False},
        }
    )
    report = audit(digits_cnn, digits_bundle(digits28), cfg)
    adv = report.sections["adversarial"].data
    nd = adv["norms"]["linf"]
    worst = nd["curves"]["worst"]["robust_accuracy"][0]
    in_audit = nd["curves"]["ensemble"]["robust_accuracy"][0]
    idx = torch.tensor(adv["indices"])
    x, y = digits28["x_test"][idx], digits28["y_test"][idx]
    (seed,) = nd["seeds"]["ensemble"]  # one chunk of 64
    alone = get_attack("ensemble", digits_cnn, eps=0.1, norm="linf", bounds=(0.0, 1.0), seed=seed)
    res = alone.run(x, y)
    assert res.config["steps"] == 100 and res.config["n_target_classes"] == 9
    assert in_audit == pytest.approx(res.robust_accuracy)
    assert worst <= res.robust_accuracy
    assert worst <= min(c["robust_accuracy"][0] for c in nd["curves"].values())
    # which attack broke each example: every example fooled by an attack is attributed
    fooled = round((adv["clean_accuracy"] - worst) * 64)
    assert sum(nd["broken_by"].values()) == fooled
    assert nd["broken_by_example"].count(None) == 64 - fooled
