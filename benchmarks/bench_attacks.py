# ruff: noqa: B023  (timed lambdas run inside their loop iteration)
"""Attack speed and strength: xrobust against torchattacks, Captum, ART and Foolbox.

One process, one model (the standard digits small_cnn trained here, seeded), one batch,
same steps and device. Every timed run is paired with a "floor" run timed just before
it: the same number of bare forward + input-gradient backward passes on the same batch
(the machine drifts, so each ratio uses its own floor). Run by hand:

    .venv/bin/python benchmarks/bench_attacks.py                 # everything
    .venv/bin/python benchmarks/bench_attacks.py --only pgd,apgd --threads 1
    .venv/bin/python benchmarks/bench_attacks.py --allocator     # + glibc allocator tuning A/B
    .venv/bin/python benchmarks/bench_attacks.py --only versus --repeats 11   # head to head
    .venv/bin/python benchmarks/bench_attacks.py --only seeds    # robust accuracy vs seeds
    .venv/bin/python benchmarks/bench_attacks.py --only reference --repeats 3  # ensemble vs AutoAttack
    .venv/bin/python benchmarks/bench_attacks.py --only layout   # APGD-T: targets side by side or not
    python benchmarks/bench_attacks.py --device cuda --only amp,versus --n 4096 --tile 16 \\
        --arch resnet --repeats 5    # on a GPU: AMP on and off

Prints a markdown table: library, attack, mode, seconds, robust accuracy, time / floor
and time / floor on the attack's output (medians over ``--repeats`` runs), then each
xrobust row's speedup over torchattacks on the same attack (ratio of the time / floor
figures).
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as tF
from torch import nn

STEP_FRACTION = 0.1  # PGD step size / eps for every library, set by --step-fraction
ROWS: list[tuple[str, str, str, float, float, float]] = []


DEVICE = torch.device("cpu")  # set by --device


def sync() -> None:
    """Wait for queued GPU work, so that wall-clock timings mean something on CUDA."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def get_model_and_data(
    n: int, epochs: int, arch: str = "small_cnn", tile: int = 1
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The seeded standard model and the first ``n`` digits test images; ``tile`` > 1
    repeats the test images that many times (batches larger than the 359 test digits, for
    GPU throughput figures; repeated images, so robust accuracies stay per image)."""
    from xrobust.data import as_tensors, load_dataset
    from xrobust.trainer import TrainConfig, train

    ds = load_dataset("digits")
    model, _ = train(
        ds, arch, TrainConfig(epochs=epochs, device=str(DEVICE), seed=0), progress=False
    )
    model.eval()
    x, y = as_tensors(ds.test)
    if tile > 1:
        x, y = x.repeat(tile, 1, 1, 1), y.repeat(tile)
    return model.to(DEVICE), x[:n].to(DEVICE), y[:n].to(DEVICE)


def floor(model: nn.Module, x: torch.Tensor, y: torch.Tensor, passes: int) -> float:
    sync()
    t = time.perf_counter()
    for _ in range(passes):
        xx = x.detach().clone().requires_grad_(True)
        loss = tF.cross_entropy(model(xx), y)
        torch.autograd.grad(loss, xx)
    sync()
    return time.perf_counter() - t


def acc(model: nn.Module, xa: torch.Tensor | np.ndarray, y: torch.Tensor) -> float:
    if isinstance(xa, np.ndarray):
        xa = torch.from_numpy(xa)
    with torch.no_grad():
        return float((model(xa.to(y.device).float()).argmax(1) == y).float().mean())


REPEATS = 1  # timed runs per row (median reported), set by --repeats


def timed(
    lib: str,
    attack: str,
    mode: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    passes: int,
    fn: Callable[[], torch.Tensor | np.ndarray | float],
) -> None:
    """Time ``fn`` REPEATS times, each run paired with a floor run just before it; print
    the median seconds and the median of the per-pair ratios.

    A second floor runs the same passes on the attack's own output: an attack's passes
    run on perturbed inputs, which cost more than clean digits on this max-pool model
    (the kernels' branches depend on the data), and that floor shows how much.
    """
    secs, ratios, adv_ratios = [], [], []
    for _ in range(REPEATS):
        f = floor(model, x, y, passes)
        torch.manual_seed(0)  # peers' random starts: the same draw in every repeat
        sync()
        t = time.perf_counter()
        out = fn()
        sync()
        dt = time.perf_counter() - t
        secs.append(dt)
        ratios.append(dt / f)
        if not isinstance(out, float):
            xa = torch.from_numpy(out) if isinstance(out, np.ndarray) else out
            adv_ratios.append(dt / floor(model, xa.to(y.device).float(), y, passes))
    ra = out if isinstance(out, float) else acc(model, out, y)
    dt, r = float(np.median(secs)), float(np.median(ratios))
    ra_floor = f"{np.median(adv_ratios):.2f}" if adv_ratios else "-"
    ROWS.append((lib, attack, mode, dt, ra, r))
    print(f"| {lib} | {attack} | {mode} | {dt:.2f} | {ra:.3f} | {r:.2f} | {ra_floor} |", flush=True)


def print_speedups() -> None:
    """Evaluation mode against torchattacks on the same attack: ratio of time / floor."""
    ta = {a: (r, ra) for lib, a, _m, _s, ra, r in ROWS if lib == "torchattacks"}
    lines = []
    for lib, a, mode, _s, ra, r in ROWS:
        if lib == "xrobust" and a in ta:
            tr, tra = ta[a]
            lines.append(f"| {a} | {mode} | {tr / r:.2f}x | {ra:.3f} | {tra:.3f} |")
    if lines:
        print(
            "\n| attack | xrobust mode | faster than torchattacks | robust acc ours | "
            "robust acc torchattacks |"
        )
        print("|---|---|---|---|---|")
        print("\n".join(lines))


def handwritten_pgd(model, x, y, eps: float, alpha: float, steps: int) -> torch.Tensor:
    """The least work a PGD-20 that also reports predictions must do (linf, first run
    from x): the clean forward (predictions; its graph gives the first gradient), the
    steps, one forward at the end. A reference row, not a library."""
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    xa = x.clone().requires_grad_(True)
    for t in range(steps):
        out = model(xa)
        if t == 0:
            _pred_clean = out.detach().argmax(1)
        (g,) = torch.autograd.grad(tF.cross_entropy(out, y, reduction="sum"), xa)
        xa = torch.clamp(xa.detach() + alpha * g.sign(), lo, hi).requires_grad_(True)
    xa = xa.detach()
    with torch.no_grad():
        _pred_adv = model(xa).argmax(1)
    return xa


def bench_seeds(model, x, y) -> None:
    """Robust accuracy of PGD-20 (linf eps 0.1) against the random draw: torchattacks and
    ours with random starts over seeds 0-9, ours from x (deterministic), and with one
    random restart."""
    from xrobust.attacks import PGD

    ta = _peers(model).get("ta")
    alpha = round(0.1 * STEP_FRACTION, 6)
    kw = dict(eps=0.1, steps=20, step_size=alpha)
    rows = {}
    if ta is not None:
        accs = []
        for s in range(10):
            torch.manual_seed(s)
            accs.append(acc(model, ta.PGD(model, eps=0.1, alpha=alpha, steps=20)(x, y), y))
        rows["torchattacks, random start, seeds 0-9"] = accs
    rows["xrobust random_start=True, seeds 0-9"] = [
        PGD(model, random_start=True, seed=s, **kw).run(x, y).robust_accuracy for s in range(10)
    ]
    rows["xrobust default (first run from x)"] = [PGD(model, **kw).run(x, y).robust_accuracy]
    rows["xrobust default + 1 random restart"] = [
        PGD(model, restarts=2, seed=0, **kw).run(x, y).robust_accuracy
    ]
    print(f"\n| PGD-20 linf eps=0.1 step {alpha} | mean | min | max |")
    print("|---|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {np.mean(v):.4f} | {min(v):.4f} | {max(v):.4f} |")


def bench_fgsm_pgd(model, x, y, only: set[str]) -> None:
    from xrobust.attacks import FGSM, PGD

    ce = nn.CrossEntropyLoss(reduction="none")
    peers = _peers(model)
    if "fgsm" in only:
        for norm, eps in (("linf", 0.1), ("l2", 1.5)):
            name = f"FGSM {norm} eps={eps}"
            timed(
                "xrobust",
                name,
                "fixed",
                model,
                x,
                y,
                1,
                lambda: FGSM(model, eps=eps, norm=norm, early_stop=False).run(x, y).x_adv,
            )
            timed(
                "xrobust",
                name,
                "eval",
                model,
                x,
                y,
                1,
                lambda: FGSM(model, eps=eps, norm=norm).run(x, y).x_adv,
            )
            if norm == "linf" and "ta" in peers:
                timed(
                    "torchattacks",
                    name,
                    "",
                    model,
                    x,
                    y,
                    1,
                    lambda: peers["ta"].FGSM(model, eps=eps)(x, y),
                )
            if norm == "linf" and "captum" in peers:
                atk = peers["captum"].FGSM(model, loss_func=ce, lower_bound=0.0, upper_bound=1.0)
                timed(
                    "captum",
                    name,
                    "",
                    model,
                    x,
                    y,
                    1,
                    lambda: atk.perturb(x, epsilon=eps, target=y),
                )
            if "art" in peers:
                fgm = peers["art_ev"].FastGradientMethod(
                    peers["art_clf"],
                    norm=np.inf if norm == "linf" else 2,
                    eps=eps,
                    batch_size=len(x),
                )
                timed("ART", name, "", model, x, y, 1, lambda: fgm.generate(x.cpu().numpy()))
            if "fb" in peers:
                fa = peers["fb"].attacks.FGSM() if norm == "linf" else peers["fb"].attacks.FGM()
                timed(
                    "foolbox",
                    name,
                    "",
                    model,
                    x,
                    y,
                    1,
                    lambda: fa(peers["fmodel"], x, y, epsilons=eps)[1],
                )
    if "pgd" in only:
        for norm, eps in (("linf", 0.1), ("linf", 0.2), ("l2", 1.5)):
            alpha = round(eps * STEP_FRACTION, 6)
            name = f"PGD-20 {norm} eps={eps}"
            kw = dict(eps=eps, norm=norm, steps=20, step_size=alpha, seed=0)
            # default: first run from x; "random start": Madry's start, as the peers do
            for label, extra in (("", {}), (" random start", {"random_start": True})):
                kwr = {**kw, **extra}
                timed(
                    "xrobust",
                    name,
                    "fixed" + label,
                    model,
                    x,
                    y,
                    20,
                    lambda: PGD(model, early_stop=False, **kwr).run(x, y).x_adv,
                )
                timed(
                    "xrobust",
                    name,
                    "eval" + label,
                    model,
                    x,
                    y,
                    20,
                    lambda: PGD(model, **kwr).run(x, y).x_adv,
                )
            if norm == "linf":
                timed(
                    "hand-written",
                    name,
                    "fixed, from x",
                    model,
                    x,
                    y,
                    20,
                    lambda: handwritten_pgd(model, x, y, eps, alpha, 20),
                )
            if "ta" in peers:
                ta = peers["ta"]
                mk = (
                    (lambda: ta.PGD(model, eps=eps, alpha=alpha, steps=20, random_start=True))
                    if norm == "linf"
                    else (
                        lambda: ta.PGDL2(model, eps=eps, alpha=alpha, steps=20, random_start=True)
                    )
                )
                timed("torchattacks", name, "", model, x, y, 20, lambda: mk()(x, y))
            if "captum" in peers and norm == "linf":  # Captum's l2 random start fails on 4-D inputs
                cp = peers["captum"].PGD(model, loss_func=ce, lower_bound=0.0, upper_bound=1.0)
                timed(
                    "captum",
                    name,
                    "",
                    model,
                    x,
                    y,
                    20,
                    lambda: cp.perturb(
                        x,
                        radius=eps,
                        step_size=alpha,
                        step_num=20,
                        target=y,
                        norm="Linf" if norm == "linf" else "L2",
                        random_start=True,
                    ),
                )
            if "art" in peers and eps != 0.2:
                pg = peers["art_ev"].ProjectedGradientDescent(
                    peers["art_clf"],
                    norm=np.inf if norm == "linf" else 2,
                    eps=eps,
                    eps_step=alpha,
                    max_iter=20,
                    num_random_init=1,
                    batch_size=len(x),
                    verbose=False,
                )
                timed("ART", name, "", model, x, y, 20, lambda: pg.generate(x.cpu().numpy()))
            if "fb" in peers and eps != 0.2:
                fbp = (
                    peers["fb"].attacks.LinfPGD(abs_stepsize=alpha, steps=20)
                    if norm == "linf"
                    else peers["fb"].attacks.L2PGD(abs_stepsize=alpha, steps=20)
                )
                timed(
                    "foolbox",
                    name,
                    "",
                    model,
                    x,
                    y,
                    20,
                    lambda: fbp(peers["fmodel"], x, y, epsilons=eps)[1],
                )
        # each library's own defaults (ours: step 2.5*eps/steps; torchattacks: alpha 2/255)
        for eps in (0.1, 0.2):
            name = f"PGD-20 linf eps={eps} (library defaults)"
            timed(
                "xrobust",
                name,
                "eval",
                model,
                x,
                y,
                20,
                lambda: PGD(model, eps=eps, steps=20, seed=0).run(x, y).x_adv,
            )
            if "ta" in peers:
                timed(
                    "torchattacks",
                    name,
                    "",
                    model,
                    x,
                    y,
                    20,
                    lambda: peers["ta"].PGD(model, eps=eps, steps=20, random_start=True)(x, y),
                )


def bench_apgd(model, x, y) -> None:
    from xrobust.attacks import APGD

    peers = _peers(model)
    timed(
        "xrobust",
        "APGD-CE linf eps=0.1 (100 it)",
        "fixed",
        model,
        x,
        y,
        100,
        lambda: APGD(model, eps=0.1, seed=0, early_stop=False).run(x, y).x_adv,
    )
    timed(
        "xrobust",
        "APGD-CE linf eps=0.1 (100 it)",
        "eval",
        model,
        x,
        y,
        100,
        lambda: APGD(model, eps=0.1, seed=0).run(x, y).x_adv,
    )
    if "ta" in peers:
        ta = peers["ta"]
        timed(
            "torchattacks",
            "APGD-CE linf eps=0.1 (100 it)",
            "",
            model,
            x,
            y,
            100,
            lambda: ta.APGD(model, norm="Linf", eps=0.1, steps=100, seed=0, loss="ce")(x, y),
        )
        timed(
            "torchattacks",
            "APGD-CE linf eps=0.1 (default 10 it)",
            "",
            model,
            x,
            y,
            10,
            lambda: ta.APGD(model, norm="Linf", eps=0.1, seed=0, loss="ce")(x, y),
        )


def bench_ensemble(model, x, y) -> None:
    from xrobust.attacks import Ensemble

    x64, y64 = x[:64], y[:64]
    peers = _peers(model)
    timed(
        "xrobust",
        "ensemble standard (APGD-CE + APGD-T, 100 it) linf eps=0.1, 64 img",
        "eval",
        model,
        x64,
        y64,
        1,
        lambda: Ensemble(model, eps=0.1, seed=0).run(x64, y64).x_adv,
    )
    if "ta" in peers:
        ta = peers["ta"]
        timed(
            "torchattacks",
            "AutoAttack standard linf eps=0.1, 64 img",
            "",
            model,
            x64,
            y64,
            1,
            lambda: ta.AutoAttack(
                model, norm="Linf", eps=0.1, version="standard", n_classes=10, seed=0
            )(x64, y64),
        )


def pgd_trained_model(epochs: int) -> nn.Module:
    """The digits small_cnn adversarially trained with PGD (linf eps 0.1), cached in
    runs/bench_pgd_trained (git-ignored) so that repeated benchmark runs reuse it."""
    from pathlib import Path

    from xrobust.data import load_dataset
    from xrobust.models import load_model
    from xrobust.trainer import TrainConfig, train

    out = Path(__file__).resolve().parents[1] / "runs" / "bench_pgd_trained"
    if (out / "model.json").exists():
        return load_model(out).eval().to(DEVICE)
    cfg = TrainConfig(
        epochs=epochs, device=str(DEVICE), seed=0, adversarial="pgd", adv_eps=0.1, adv_steps=7
    )
    model, _ = train(load_dataset("digits"), "small_cnn", cfg, out, progress=False)
    return model.eval().to(DEVICE)


def _reference_autoattack(model, x, y, norm: str, eps: float, seed: int):
    """Croce and Hein's AutoAttack (the pyautoattack package) running APGD-CE then
    APGD-T (100 iterations, 9 target classes, one restart): the sequential reference."""
    from pyautoattack import AutoAttack

    aa = AutoAttack(
        model, attacks=["apgd-ce", "apgd-t"], version="custom", eps=eps,
        norm="Linf" if norm == "linf" else "L2", seed=seed, device=DEVICE,
    )  # fmt: skip
    aa.verbose = False
    aa.apgd.n_restarts, aa.apgd.n_iter = 1, 100
    aa.apgd_targeted.n_restarts, aa.apgd_targeted.n_iter = 1, 100
    aa.apgd_targeted.n_target_classes = 9
    return aa.run_standard_evaluation(x, y, batch_size=len(x))[0]


def bench_reference(model, x, y, epochs: int) -> None:
    """The ensemble against the reference AutoAttack's APGD-CE + APGD-T, head to head
    (runs alternate, order flipping every repeat), on the standard and the PGD-trained
    digits CNN, linf 0.1 and l2 1.0. Prints the median ratio of seconds, robust
    accuracies and the number of images whose verdict differs."""
    try:
        import pyautoattack  # noqa: F401
    except ImportError:
        print("pyautoattack is not installed (pip install --no-deps pyautoattack)")
        return
    from xrobust.attacks import Ensemble

    print(
        "\n| model | threat | reference s | ensemble s | speed-up: median (min-max) | "
        "robust acc reference | robust acc ensemble | images differing | "
        "reference on a channels_last copy s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, m in (("standard", model), ("PGD-trained", pgd_trained_model(epochs))):
        for norm, eps in (("linf", 0.1), ("l2", 1.0)):
            ours = lambda m=m, norm=norm, eps=eps: Ensemble(m, eps=eps, norm=norm, seed=0).run(x, y).x_adv  # noqa: E731
            ref = lambda m=m, norm=norm, eps=eps: _reference_autoattack(m, x, y, norm, eps, 0)  # noqa: E731
            secs: dict = {ours: [], ref: []}
            outs: dict = {}
            for i in range(REPEATS):
                for fn in (ours, ref) if i % 2 == 0 else (ref, ours):
                    sync()
                    t = time.perf_counter()
                    outs[fn] = fn()
                    sync()
                    secs[fn].append(time.perf_counter() - t)
            ratios = [a / b for a, b in zip(secs[ref], secs[ours])]
            with torch.no_grad():
                ok_o = m(outs[ours]).argmax(1) == y
                ok_r = m(outs[ref].to(y.device)).argmax(1) == y
            # xrobust evaluates a CPU CNN through a channels_last copy (models/_layout.py):
            # the reference given such a copy by hand shows what the layout alone buys
            m_cl = copy.deepcopy(m).to(memory_format=torch.channels_last)
            sync()
            t = time.perf_counter()
            _reference_autoattack(m_cl, x, y, norm, eps, 0)
            sync()
            t_cl = time.perf_counter() - t
            print(
                f"| {label} | {norm} {eps} | {np.median(secs[ref]):.1f} | {np.median(secs[ours]):.1f} "
                f"| {np.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) "
                f"| {float(ok_r.float().mean()):.3f} | {float(ok_o.float().mean()):.3f} "
                f"| {int((ok_o != ok_r).sum())} | {t_cl:.1f} |",
                flush=True,
            )


def bench_layout(model, x, y, epochs: int) -> None:
    """APGD-T's layout: every target side by side, a row budget, or one target at a time
    (the reference's order), on the robust model where most work is done; and the cost
    per example of one forward+backward pass against the batch size."""
    from xrobust.attacks import APGDT

    print("\n| batch rows | ms per pass | microseconds per example |")
    print("|---|---|---|")
    for rows in (64, 128, 256, 512, 1024, 2048):
        xb = x.repeat((rows + len(x) - 1) // len(x), 1, 1, 1)[:rows]
        yb = y.repeat((rows + len(y) - 1) // len(y))[:rows]
        floor(model, xb, yb, 2)
        t = min(floor(model, xb, yb, 5) / 5 for _ in range(3))
        print(f"| {rows} | {t * 1e3:.1f} | {t / rows * 1e6:.0f} |", flush=True)
    m = pgd_trained_model(epochs)
    print("\n| model | threat | max_rows | seconds | robust acc | layout |")
    print("|---|---|---|---|---|---|")
    for norm, eps in (("linf", 0.1), ("l2", 1.0)):
        for rows in (None, 100_000, 1):
            atk = APGDT(m, eps=eps, norm=norm, seed=0, max_rows=rows)
            t = time.perf_counter()
            r = atk.run(x, y)
            dt = time.perf_counter() - t
            print(
                f"| PGD-trained | {norm} {eps} | {rows or 'auto'} | {dt:.1f} | "
                f"{r.robust_accuracy:.3f} | {r.config.get('layout')} |",
                flush=True,
            )


def bench_versus(model, x, y) -> None:
    """Head to head with torchattacks: the two runs alternate (order flipping every
    repeat) and each repeat gives one ratio of seconds, so machine drift cancels out.
    Prints the median, min and max over ``--repeats`` pairs."""
    from xrobust.attacks import PGD

    ta = _peers(model).get("ta")
    if ta is None:
        print("torchattacks is not installed: no head-to-head rows")
        return
    cases = []
    for norm, eps in (("linf", 0.1), ("linf", 0.2), ("l2", 1.5)):
        alpha = round(eps * STEP_FRACTION, 6)
        kw = dict(eps=eps, norm=norm, steps=20, step_size=alpha, seed=0)
        peer = ta.PGD if norm == "linf" else ta.PGDL2
        theirs = lambda peer=peer, eps=eps, alpha=alpha: peer(  # noqa: E731
            model, eps=eps, alpha=alpha, steps=20, random_start=True
        )(x, y)
        for mode, extra in (
            ("eval", {}),
            ("eval random start", {"random_start": True}),
            ("fixed", {"early_stop": False}),
        ):
            kwm = {**kw, **extra}
            ours = lambda kwm=kwm: PGD(model, **kwm).run(x, y).x_adv  # noqa: E731
            cases.append((f"PGD-20 {norm} eps={eps}", mode, ours, theirs))
    print(
        "\n| attack | xrobust mode | torchattacks s / xrobust s: median (min-max) | "
        "robust acc ours | robust acc torchattacks |"
    )
    print("|---|---|---|---|---|")
    for name, mode, ours, theirs in cases:
        ratios = []
        for i in range(REPEATS):
            order = (ours, theirs) if i % 2 == 0 else (theirs, ours)
            secs = {}
            for fn in order:
                torch.manual_seed(i)
                sync()
                t = time.perf_counter()
                out = fn()
                sync()
                secs[fn] = (time.perf_counter() - t, out)
            ratios.append(secs[theirs][0] / secs[ours][0])
        a_ours, a_theirs = acc(model, secs[ours][1], y), acc(model, secs[theirs][1], y)
        print(
            f"| {name} | {mode} | {np.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) "
            f"| {a_ours:.3f} | {a_theirs:.3f} |",
            flush=True,
        )


def bench_amp(model, x, y) -> None:
    """Mixed precision on CUDA: PGD-20 (linf, eps 0.1 and 0.2, both budget modes) with the
    forward in fp32, bf16 and fp16; seconds (median of ``--repeats``, modes alternating),
    speedup over fp32 and the robust-accuracy difference (goal: >= 1.5x, within 0.5 point).
    On a CPU ``amp`` is ignored and the rows only exercise the code."""
    from xrobust.attacks import PGD

    if DEVICE.type != "cuda":
        print("\n(amp rows on a CPU: autocast is off there, the figures are not AMP figures)")
    print("\n| PGD-20 | mode | amp | seconds | speedup over fp32 | robust acc | diff (points) |")
    print("|---|---|---|---|---|---|---|")
    for eps in (0.1, 0.2):
        for early_stop in (True, False):
            kw = dict(eps=eps, steps=20, step_size=round(eps * STEP_FRACTION, 6), seed=0)
            secs: dict[str, list[float]] = {"fp32": [], "bf16": [], "fp16": []}
            accs: dict[str, float] = {}
            amps = {"fp32": False, "bf16": "bf16", "fp16": "fp16"}
            for i in range(REPEATS):
                order = list(amps) if i % 2 == 0 else list(reversed(amps))
                for name in order:
                    atk = PGD(model, early_stop=early_stop, amp=amps[name], **kw)
                    sync()
                    t = time.perf_counter()
                    r = atk.run(x, y)
                    sync()
                    secs[name].append(time.perf_counter() - t)
                    accs[name] = r.robust_accuracy
            base = float(np.median(secs["fp32"]))
            for name in amps:
                med = float(np.median(secs[name]))
                print(
                    f"| linf eps={eps} | {'eval' if early_stop else 'fixed'} | {name} | "
                    f"{med:.3f} | {base / med:.2f}x | {accs[name]:.3f} | "
                    f"{100 * (accs[name] - accs['fp32']):+.1f} |",
                    flush=True,
                )


_PEERS: dict = {}


def _peers(model: nn.Module) -> dict:
    if _PEERS:
        return _PEERS
    try:
        import torchattacks

        _PEERS["ta"] = torchattacks
    except ImportError:
        pass
    try:
        import captum.robust as cr

        _PEERS["captum"] = cr
    except ImportError:
        pass
    try:
        from art.attacks import evasion
        from art.estimators.classification import PyTorchClassifier

        _PEERS["art"] = True
        _PEERS["art_ev"] = evasion
        _PEERS["art_clf"] = PyTorchClassifier(
            model,
            loss=nn.CrossEntropyLoss(),
            input_shape=(1, 28, 28),
            nb_classes=10,
            clip_values=(0.0, 1.0),
            device_type="gpu" if DEVICE.type == "cuda" else "cpu",
        )
    except ImportError:
        pass
    try:
        import foolbox

        _PEERS["fb"] = foolbox
        _PEERS["fmodel"] = foolbox.PyTorchModel(model, bounds=(0, 1))
    except ImportError:
        pass
    return _PEERS


def allocator_ab(args: argparse.Namespace) -> None:
    """The same PGD-20 rows in two fresh processes: glibc defaults vs tuned allocator."""
    base = [
        sys.executable,
        __file__,
        "--only",
        "pgd",
        "--no-peers",
        "--threads",
        str(args.threads),
        "--epochs",
        str(args.epochs),
        "--step-fraction",
        str(args.step_fraction),
        "--repeats",
        str(args.repeats),
    ]
    env_tuned = dict(
        os.environ,
        MALLOC_MMAP_MAX_="0",
        MALLOC_TRIM_THRESHOLD_=str(1 << 30),
        MALLOC_TOP_PAD_=str(64 << 20),
    )
    for label, env in (("glibc defaults", dict(os.environ)), ("tuned allocator", env_tuned)):
        print(f"\n### {label}", flush=True)
        subprocess.run(base, env=env, check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="fgsm,pgd,apgd,ensemble")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument(
        "--step-fraction",
        type=float,
        default=0.1,
        help="PGD step size as a fraction of eps, the same for every library (default 0.1)",
    )
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per row (median)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--arch", default="small_cnn", help="model: small_cnn (default) or resnet")
    ap.add_argument(
        "--tile", type=int, default=1, help="repeat the test images (batches beyond 359)"
    )
    ap.add_argument("--allocator", action="store_true", help="run the allocator A/B instead")
    args = ap.parse_args()
    global STEP_FRACTION, REPEATS, DEVICE
    STEP_FRACTION = args.step_fraction
    REPEATS = max(1, args.repeats)
    DEVICE = torch.device(args.device)
    if args.allocator:
        allocator_ab(args)
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, x, y = get_model_and_data(args.n, args.epochs, args.arch, args.tile)
    if args.no_peers:
        _PEERS["none"] = True
    print(
        f"torch {torch.__version__}, device {DEVICE}, model {args.arch}, "
        f"threads {torch.get_num_threads()}, batch {len(x)}, "
        f"clean accuracy {acc(model, x, y):.3f}, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "\n| library | attack | mode | seconds | robust acc | time / floor | "
        "time / floor on x_adv |"
    )
    print("|---|---|---|---|---|---|---|")
    only = set(args.only.split(","))
    bench_fgsm_pgd(model, x, y, only)
    if "apgd" in only:
        bench_apgd(model, x, y)
    if "ensemble" in only:
        bench_ensemble(model, x, y)
    if "versus" in only:
        bench_versus(model, x, y)
    if "reference" in only:
        bench_reference(model, x, y, args.epochs)
    if "layout" in only:
        bench_layout(model, x, y, args.epochs)
    if "seeds" in only:
        bench_seeds(model, x, y)
    if "amp" in only:
        bench_amp(model, x, y)
    print_speedups()
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
