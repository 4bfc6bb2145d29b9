# ruff: noqa: B023  (timed lambdas run inside their loop iteration)
"""FAB-T against Croce and Hein's reference, and the ensemble presets' strength and time.

Same model (the seeded digits small_cnn of bench_attacks.py, standard and PGD-trained),
same images, CPU. Run by hand:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_fab.py --only fab --n 256
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_fab.py --only presets --n 256

``fab``: per model and threat (linf 0.1, l2 1.0): robust accuracy of the reference FAB-T
(pyautoattack ``FABAttack_PT``, targeted, 9 target classes, 100 iterations, one restart:
AutoAttack's standard settings) and of ours in evaluation mode, their seconds, the images
whose verdict differs; then the minimal norms (both with an eps so large that every
adversarial found counts; ours with ``early_stop=False``): median over the images both
broke, and seconds.

``presets``: each ensemble preset's robust accuracy, seconds, and which member broke how
many images.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_attacks as ba

#: an eps so large that every adversarial found counts (minimal norms)
HUGE = {"linf": 1.0, "l2": 20.0}


def _norms(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    d = (x_adv - x).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


def reference_fab_t(model, x, y, norm: str, eps: float) -> torch.Tensor:
    from pyautoattack.fab_pt import FABAttack_PT

    fab = FABAttack_PT(
        model, norm="Linf" if norm == "linf" else "L2", n_restarts=1, n_iter=100, eps=eps,
        seed=0, targeted=True, n_target_classes=9, device=x.device,
    )  # fmt: skip
    fab.targeted, fab.verbose = True, False
    with torch.no_grad():
        return fab.perturb(x, y)


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench_fab(models, x, y) -> None:
    from xrobust.attacks import FABT

    print(
        "\n| model | threat | reference s | ours s | robust acc reference | robust acc ours "
        "| images differing | median min norm reference | median min norm ours "
        "| min-norm s reference | min-norm s ours |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, m in models:
        for norm, eps in THREATS:
            x_ref, t_ref = _timed(lambda: reference_fab_t(m, x, y, norm, eps))
            ours, t_ours = _timed(lambda: FABT(m, eps=eps, norm=norm, seed=0).run(x, y))
            with torch.no_grad():
                ok_ref = (m(x_ref).argmax(1) == y) | (_norms(x_ref, x, norm) > eps + 1e-6)
                ok_ours = m(ours.x_adv).argmax(1) == y
            big = HUGE[norm]
            x_ref2, t_ref2 = _timed(lambda: reference_fab_t(m, x, y, norm, big))
            mn, t_mn = _timed(
                lambda: FABT(m, eps=big, norm=norm, seed=0, early_stop=False).run(x, y)
            )
            with torch.no_grad():
                clean_ok = m(x).argmax(1) == y
                ref_found = (m(x_ref2).argmax(1) != y) & clean_ok
            both = ref_found & mn.success & clean_ok
            n_ref = _norms(x_ref2, x, norm)[both]
            n_ours = mn.norms[both]
            print(
                f"| {label} | {norm} {eps} | {t_ref:.1f} | {t_ours:.1f} "
                f"| {float(ok_ref.float().mean()):.4f} | {float(ok_ours.float().mean()):.4f} "
                f"| {int((ok_ref != ok_ours).sum())} "
                f"| {float(n_ref.median()):.4f} ({int(ref_found.sum())} found) "
                f"| {float(n_ours.median()):.4f} ({int((mn.success & clean_ok).sum())} found) "
                f"| {t_ref2:.1f} | {t_mn:.1f} |",
                flush=True,
            )


def bench_presets(models, x, y) -> None:
    """The ``autoattack`` preset's members in order, each run on the images still robust
    (as the ensemble runs them), with the cumulative seconds and robust accuracy after
    each: the ``standard`` preset is the row after apgd_t, ``autoattack`` the last row.
    Members not registered (square before the black-box attacks land) are skipped."""
    from xrobust.attacks import ATTACKS, Ensemble
    from xrobust.attacks.ensemble import PRESETS

    print("\n| model | threat | after member | member s | cumulative s | robust acc | broken |")
    print("|---|---|---|---|---|---|---|")
    for label, m in models:
        for norm, eps in THREATS:
            have = tuple(a for a in PRESETS["autoattack"] if a in ATTACKS)
            missing = [a for a in PRESETS["autoattack"] if a not in ATTACKS]
            members = Ensemble(m, eps=eps, norm=norm, attacks=have).members()
            torch.manual_seed(0)
            with torch.no_grad():
                alive = m(x).argmax(1) == y
            total = 0.0
            for atk in members:
                idx = alive.nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                res, secs = _timed(lambda: atk.run(x[idx], y[idx]))
                total += secs
                alive[idx[res.success]] = False
                print(
                    f"| {label} | {norm} {eps} | {atk.name} | {secs:.1f} | {total:.1f} "
                    f"| {float(alive.float().mean()):.4f} | {int(res.success.sum())} |",
                    flush=True,
                )
            if missing:
                print(f"| {label} | {norm} {eps} | ({', '.join(missing)} not registered) | | | | |")


THREATS = [("linf", 0.1), ("l2", 1.0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="fab,presets")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--models", default="standard,pgd", help="standard, pgd or both")
    ap.add_argument("--threats", default="linf:0.1,l2:1.0")
    args = ap.parse_args()
    THREATS[:] = [(t.split(":")[0], float(t.split(":")[1])) for t in args.threats.split(",")]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, x, y = ba.get_model_and_data(args.n, args.epochs)
    models = []
    if "standard" in args.models:
        models.append(("standard", model))
    if "pgd" in args.models:
        models.append(("PGD-trained", ba.pgd_trained_model(args.epochs)))
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, {len(x)} digits test "
        f"images, clean accuracy {ba.acc(model, x, y):.3f}, load average "
        f"{os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    only = set(args.only.split(","))
    if "fab" in only:
        bench_fab(models, x, y)
    if "presets" in only:
        bench_presets(models, x, y)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
