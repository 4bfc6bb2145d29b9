"""The evaluation sanity checks catch planted gradient-masking cases and pass a plain model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from xrobust.audit import AuditConfig, audit
from xrobust.data.spec import DatasetBundle, DatasetSpec

CFG = {
    "batch_size": 64,
    "clean": {"n": 64},
    "adversarial": {"enabled": False, "norms": ["linf"], "eps": {"linf": [0.1]}, "steps": 10},
    "corruption": {"enabled": False},
    "explanations": {"enabled": False},
    "sanity": {"n": 24, "convergence_factor": 2},
}


class RandomisedForward(nn.Module):
    """Adds fresh noise to the input at every call (a 'randomised defence')."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + 0.1 * torch.randn_like(x))


class Softmaxed(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.net(x), dim=1)


class Quantised(nn.Module):
    """Rounds the input to 4 levels first: the input gradient is zero almost everywhere."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 3) / 3)


def _bundle(d: dict[str, torch.Tensor]) -> DatasetBundle:
    spec = DatasetSpec("digits-test", "image", (1, 28, 28), 10, tuple("0123456789"), (0.0, 1.0))
    return DatasetBundle(
        TensorDataset(d["x_train"], d["y_train"]), TensorDataset(d["x_test"], d["y_test"]), spec
    )


def _checks(model: nn.Module, d: dict[str, torch.Tensor]) -> dict[str, str]:
    r = audit(model, _bundle(d), AuditConfig.from_dict(CFG))
    assert r.sections["sanity"].status == "ok", r.sections["sanity"].reason
    for c in r.sanity_checks:
        assert c.why and c.message  # every result says what was seen and why it matters
    return {c.name: c.status for c in r.sanity_checks}


def test_plain_trained_model_passes_and_is_left_untouched(digits28, digits_cnn) -> None:
    before = {k: v.clone() for k, v in digits_cnn.state_dict().items()}
    flags = [p.requires_grad for p in digits_cnn.parameters()]
    digits_cnn.train()
    try:
        st = _checks(digits_cnn, digits28)
        assert digits_cnn.training  # the caller's mode is restored
    finally:
        digits_cnn.eval()
    assert all(torch.equal(before[k], v) for k, v in digits_cnn.state_dict().items())
    assert [p.requires_grad for p in digits_cnn.parameters()] == flags
    assert all(p.grad is None for p in digits_cnn.parameters())
    assert "fail" not in st.values(), st
    # the checks that catch the planted cases below all pass on the plain model
    for name in (
        "deterministic_outputs",
        "logits_not_probabilities",
        "finite_nonzero_gradients",
        "iterative_beats_single_step",
        "attack_beats_random_noise",
    ):
        assert st[name] == "pass", (name, st)
    assert st["black_box_not_stronger"] == "pass"  # Square is not stronger than PGD here
    assert st["large_eps_breaks_model"] == "pass"


def test_randomised_forward_fails_determinism(digits28, digits_cnn) -> None:
    st = _checks(RandomisedForward(digits_cnn), digits28)
    assert st["deterministic_outputs"] == "fail"


def test_softmax_outputs_fail_logit_check(digits28, digits_cnn) -> None:
    st = _checks(Softmaxed(digits_cnn), digits28)
    assert st["logits_not_probabilities"] == "fail"
    assert st["deterministic_outputs"] == "pass"


def test_quantised_input_fails_gradient_check(digits28, digits_cnn) -> None:
    r = audit(Quantised(digits_cnn), _bundle(digits28), AuditConfig.from_dict(CFG))
    st = {c.name: c for c in r.sanity_checks}
    assert st["finite_nonzero_gradients"].status == "fail"
    assert st["finite_nonzero_gradients"].details["zero_fraction"] > 0.5
    # masked gradients: Square, which needs no gradient, beats PGD by far
    bb = st["black_box_not_stronger"]
    assert bb.status == "warn", bb.message
    assert all(r["black_box"] < r["white_box"] for r in bb.details["rows"]), bb.details
    # the failed check fails the audit's sanity requirement: robust numbers untrustworthy
    req = {c.name: c.status for c in r.requirements}
    assert req["sanity_checks_pass"] == "fail" and not r.passed
