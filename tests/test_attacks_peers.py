"""Agreement with peer libraries (development dependencies only): torchattacks, Foolbox,
Captum."""

from __future__ import annotations

import copy

import pytest
import torch

from xrobust.attacks import APGD, FGSM, PGD


@pytest.fixture(scope="module")
def data(digits28):
    return digits28["x_test"][:256].clone(), digits28["y_test"][:256].clone()


def test_fgsm_equals_torchattacks(digits_cnn, data) -> None:
    ta = pytest.importorskip("torchattacks")
    x, y = data
    ours = FGSM(digits_cnn, eps=0.1, early_stop=False).run(x, y)
    theirs = ta.FGSM(digits_cnn, eps=0.1)(x, y)
    assert torch.allclose(ours.x_adv, theirs, atol=1e-6)
    targeted = (y + 3) % 10
    atk = ta.FGSM(digits_cnn, eps=0.1)
    atk.set_mode_targeted_by_label(quiet=True)
    theirs_t = atk(x, targeted)
    ours_t = FGSM(digits_cnn, eps=0.1, early_stop=False).run(x, y, target=targeted)
    assert torch.allclose(ours_t.x_adv, theirs_t, atol=1e-6)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
def test_fgsm_equals_foolbox(digits_cnn, data, norm, eps) -> None:
    fb = pytest.importorskip("foolbox")
    x, y = data
    # Foolbox computes weight gradients and leaves them on the parameters: give it a copy so
    # the shared session fixture stays clean for other tests.
    fmodel = fb.PyTorchModel(copy.deepcopy(digits_cnn), bounds=(0, 1))
    atk = fb.attacks.FGSM() if norm == "linf" else fb.attacks.FGM()
    _, clipped, _ = atk(fmodel, x, y, epsilons=eps)
    ours = FGSM(digits_cnn, eps=eps, norm=norm, early_stop=False).run(x, y)
    assert torch.allclose(ours.x_adv, clipped, atol=1e-5)


def test_fgsm_equals_captum_set_alike(digits_cnn, data) -> None:
    robust = pytest.importorskip("captum.robust")
    x, y = data
    # Captum skips pixels whose gradient is below zero_thresh (1e-6) and its default loss
    # expects probabilities: pass the logit cross-entropy and a zero threshold.
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    atk = robust.FGSM(digits_cnn, loss_func=ce, lower_bound=0.0, upper_bound=1.0)
    atk.zero_thresh = 0.0
    theirs = atk.perturb(x, epsilon=0.1, target=y)
    ours = FGSM(digits_cnn, eps=0.1, early_stop=False).run(x, y)
    assert torch.allclose(ours.x_adv, theirs, atol=1e-6)


@pytest.mark.slow
def test_pgd_linf_robust_accuracy_within_one_point_of_torchattacks(digits_cnn, data) -> None:
    ta = pytest.importorskip("torchattacks")
    x, y = data
    torch.manual_seed(0)
    theirs = ta.PGD(digits_cnn, eps=0.1, alpha=0.01, steps=20, random_start=True)(x, y)
    with torch.no_grad():
        acc_theirs = float((digits_cnn(theirs).argmax(1) == y).float().mean())
    kw = dict(eps=0.1, step_size=0.01, steps=20, random_start=True, seed=0)
    fixed = PGD(digits_cnn, early_stop=False, **kw).run(x, y)
    evalm = PGD(digits_cnn, **kw).run(x, y)
    default = PGD(digits_cnn, eps=0.1, step_size=0.01, steps=20).run(x, y)  # first run from x
    assert abs(fixed.robust_accuracy - acc_theirs) <= 0.01 + 1e-9
    assert evalm.robust_accuracy <= fixed.robust_accuracy
    assert evalm.robust_accuracy <= acc_theirs + 0.01
    assert default.robust_accuracy <= acc_theirs + 0.01
    # APGD-CE (reference budget) is at least as strong as PGD-20
    apgd = APGD(digits_cnn, eps=0.1, seed=0).run(x, y)
    assert apgd.robust_accuracy <= fixed.robust_accuracy


def test_ensemble_at_least_as_strong_as_reference_autoattack(digits_cnn, data) -> None:
    # Croce and Hein's code (pyautoattack) running APGD-CE then APGD-T at the same
    # settings: the ensemble's robust accuracy is no higher (one image of slack)
    aa_mod = pytest.importorskip("pyautoattack")
    from xrobust.attacks import Ensemble

    x, y = data[0][:64], data[1][:64]
    model = copy.deepcopy(digits_cnn)
    for norm, eps in (("linf", 0.06), ("l2", 0.8)):
        aa = aa_mod.AutoAttack(
            model, attacks=["apgd-ce", "apgd-t"], version="custom", eps=eps,
            norm="Linf" if norm == "linf" else "L2", seed=0,
        )  # fmt: skip
        aa.verbose = False
        aa.apgd.n_iter = aa.apgd_targeted.n_iter = 20
        aa.apgd_targeted.n_target_classes = 3
        with torch.no_grad():
            x_ref, _ = aa.run_standard_evaluation(x, y, batch_size=64)
            ref = float((model(x_ref).argmax(1) == y).float().mean())
        ours = Ensemble(model, eps=eps, norm=norm, steps=20, n_target_classes=3, seed=0).run(x, y)
        assert ours.robust_accuracy <= ref + 1 / 64 + 1e-9, (norm, ours.robust_accuracy, ref)
        assert ours.robust_accuracy < ours.clean_accuracy
