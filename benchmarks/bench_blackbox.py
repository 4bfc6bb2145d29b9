"""Query-only attacks: xrobust's Square and HopSkipJump against ART, torchattacks and
Foolbox, in one run on one model, the same images and the same query budgets.

The model is the standard digits small_cnn trained here (seeded, as in
``bench_attacks.py``). Timed runs give xrobust the model itself (its classifier counts
every query per example, exactly, and evaluates through its channels_last copy, as it
does for any user of a CPU CNN) and the peers the model wrapped in :class:`Rows`, which
only adds up the rows asked (no measurable cost). Per-example query counts of the peers
come from an untimed second run through :class:`Counting` (rows charged to the nearest
clean image in Linf: every Square query lies within eps of its own image), so the
counting never slows a timed run. HopSkipJump queries wander far from their image, so
ART's HopSkipJump (which attacks one image after the other anyway) is counted image by
image and Foolbox's (batched) reports the mean (total / images) instead of the median.
Extra rows separate the two sources of xrobust's speed: xrobust with
``channels_last=False`` (the algorithm alone), and torchattacks on a channels_last copy
of the model (what a user of that library gains by converting the model by hand).

* Square, Linf eps 0.1, 1,000 queries, the first 256 test images: robust accuracy,
  wall time, median queries; and white-box APGD-CE (100 steps) on the same images.
* HopSkipJump, L2, 5,000 queries, the first 100 test images: success rate (an
  adversarial found), median L2 norm of the adversarials, the fraction within L2 1.5
  and 2.0, wall time, median queries; and xrobust's evaluation mode at eps 2.0, where
  an example leaves once its adversarial lies within eps (the job "robust accuracy at
  L2 2.0 within 5,000 queries", which the peers can only answer with a full run). ART's and Foolbox's HopSkipJump have no query
  budget: they run ``--hsj-iters`` iterations, chosen so that their total stays at or
  under 5,000 queries per image (the counts printed say what they used).

Run by hand (one thread, as the other benchmarks):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_blackbox.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_blackbox.py --only square
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_blackbox.py --only hsj --hsj-n 20
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_blackbox.py --only square --skip art

Prints markdown tables (each row as soon as it is measured).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from torch import nn

#: peer libraries not to run (--skip)
SKIP: set[str] = set()


class Counting(nn.Module):
    """``model`` counting every row asked about, per clean image (nearest in Linf)."""

    def __init__(self, model: nn.Module, x_clean: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.x_clean = x_clean.flatten(1)
        self.per_example = torch.zeros(len(x_clean), dtype=torch.long)
        self.rows = 0
        self.calls = 0

    def reset(self, x_clean: torch.Tensor | None = None) -> None:
        if x_clean is not None:
            self.x_clean = x_clean.flatten(1)
        self.per_example = torch.zeros(len(self.x_clean), dtype=torch.long)
        self.rows = self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += int(x.shape[0])
        self.calls += 1
        with torch.no_grad():
            flat = x.detach().flatten(1).to(self.x_clean.dtype)
            owner = torch.cdist(flat, self.x_clean, p=float("inf")).argmin(1)
            self.per_example.index_add_(0, owner.cpu(), torch.ones_like(owner).cpu())
        return self.model(x.float())


class Rows(nn.Module):
    """``model`` adding up the rows and calls it is asked about (nothing per example)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = self.calls = 0

    def reset(self) -> None:
        self.rows = self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += int(x.shape[0])
        self.calls += 1
        return self.model(x.float())


def channels_last(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).to(memory_format=torch.channels_last)


def get_model_and_data(epochs: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    from xrobust.data import as_tensors, load_dataset
    from xrobust.trainer import TrainConfig, train

    ds = load_dataset("digits")
    model, _ = train(ds, "small_cnn", TrainConfig(epochs=epochs, device="cpu", seed=0), progress=False)
    model.eval()
    x, y = as_tensors(ds.test)
    return model, x, y


def robust(model: nn.Module, xa: torch.Tensor | np.ndarray, y: torch.Tensor) -> torch.Tensor:
    xa = torch.as_tensor(np.asarray(xa) if not isinstance(xa, torch.Tensor) else xa).float()
    with torch.no_grad():
        return model(xa).argmax(1) == y


def row(*cells: object) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


# ---------------------------------------------------------------------- Square
def bench_square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, queries: int, eps: float) -> None:
    from xrobust.attacks import get_attack
    from xrobust.models import as_classifier

    print(f"\nSquare Linf eps {eps}, {queries} queries, {len(x)} images\n")
    row("library", "robust acc", "seconds", "median queries (attacked)", "mean queries", "rows asked")
    print("|---|---|---|---|---|---|")
    clean = robust(model, x, y)

    def report(lib: str, xa: torch.Tensor, dt: float, per: torch.Tensor | None, rows: int) -> None:
        ok = robust(model, xa, y)
        med = f"{per[clean].float().median():.0f}" if per is not None else "n/a"
        row(lib, f"{ok.float().mean():.3f}", f"{dt:.1f}", med, f"{rows / len(x):.0f}", rows)

    for cl in (None, False):
        clf = as_classifier(model, input_shape=(1, 28, 28), bounds=(0.0, 1.0), channels_last=cl)
        t = time.perf_counter()
        res = get_attack("square", clf, eps=eps, norm="linf", queries=queries, seed=0).run(x, y)
        dt = time.perf_counter() - t
        assert int(res.queries.sum()) == clf.queries, "per-example counts differ from the rows asked"
        lib = "xrobust square" + (" (channels_last=False)" if cl is False else "")
        report(lib, res.x_adv, dt, res.queries.cpu(), clf.queries)

    try:
        if "torchattacks" in SKIP:
            raise ImportError
        import torchattacks

        def ta(net: nn.Module) -> tuple[torch.Tensor, float]:
            # torchattacks' n_queries counts iterations after the start (+1 start, +1 clean)
            atk = torchattacks.Square(net, norm="Linf", eps=eps, n_queries=queries - 2, p_init=0.8, seed=0)
            t = time.perf_counter()
            xa = atk(x, y)
            return xa, time.perf_counter() - t

        cnt = Counting(model, x).eval()
        ta(cnt)  # untimed: the per-example counts (the attack is seeded: same path below)
        for lib, net in (("torchattacks Square", model), ("torchattacks Square (channels_last model)", channels_last(model))):
            rows = Rows(net).eval()
            xa, dt = ta(rows)
            if rows.rows != cnt.rows:  # the counted run took another path: say so
                print(f"note: {lib} asked {rows.rows} rows, its counted run {cnt.rows}")
            report(lib, xa, dt, cnt.per_example, rows.rows)
    except ImportError:
        row("torchattacks Square", "not run", "", "", "", "")

    try:
        if "art" in SKIP:
            raise ImportError
        from art.attacks.evasion import SquareAttack
        from art.estimators.classification import PyTorchClassifier

        rows = Rows(model).eval()
        clf = PyTorchClassifier(rows, loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                                nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")  # fmt: skip
        atk = SquareAttack(clf, norm=np.inf, eps=eps, max_iter=queries - 2, p_init=0.8,
                           nb_restarts=1, batch_size=len(x), verbose=False)  # fmt: skip
        np.random.seed(0)
        t = time.perf_counter()
        xa = atk.generate(x.numpy())
        report("ART SquareAttack", torch.as_tensor(xa), time.perf_counter() - t, None, rows.rows)
    except ImportError:
        row("ART SquareAttack", "not run", "", "", "", "")

    t = time.perf_counter()
    ap = get_attack("apgd", model, eps=eps, norm="linf", steps=100, seed=0).run(x, y)
    row("xrobust apgd (white-box, CE, 100 steps)", f"{ap.robust_accuracy:.3f}",
        f"{time.perf_counter() - t:.1f}", "", "", "")  # fmt: skip


# ---------------------------------------------------------------------- HopSkipJump
def bench_hsj(model: nn.Module, x: torch.Tensor, y: torch.Tensor, queries: int, iters: int) -> None:
    from xrobust.attacks import get_attack

    print(f"\nHopSkipJump L2, {queries} queries, {len(x)} images (peers: {iters} iterations)\n")
    row("library", "success", "median L2", "within L2 1.5", "within L2 2.0", "seconds",
        "median queries", "mean queries")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    clean = robust(model, x, y)

    def report(lib: str, xa: torch.Tensor, dt: float, per: torch.Tensor | None, total: int) -> None:
        xa = torch.as_tensor(xa).float()
        fooled = ~robust(model, xa, y) & clean
        nrm = (xa - x).flatten(1).norm(dim=1)
        nf = nrm[fooled]
        k = int(clean.sum())
        med = f"{per[clean].float().median():.0f}" if per is not None else "n/a"
        row(lib, f"{fooled.sum() / k:.3f}", f"{nf.median():.3f}" if len(nf) else "-",
            f"{(fooled & (nrm <= 1.5)).sum() / k:.3f}", f"{(fooled & (nrm <= 2.0)).sum() / k:.3f}",
            f"{dt:.1f}", med, f"{total / len(x):.0f}")  # fmt: skip

    from xrobust.models import as_classifier

    for cl, eps in ((None, None), (False, None), (None, 2.0)):
        clf = as_classifier(model, input_shape=(1, 28, 28), bounds=(0.0, 1.0), channels_last=cl)
        t = time.perf_counter()
        res = get_attack("hop_skip_jump", clf, norm="l2", eps=eps, queries=queries, seed=0).run(x, y)
        dt = time.perf_counter() - t
        assert int(res.queries.sum()) == clf.queries, "per-example counts differ from the rows asked"
        lib = "xrobust hop_skip_jump" + (" (channels_last=False)" if cl is False else "")
        lib += " eps 2.0 (evaluation mode)" if eps is not None else ""
        report(lib, res.x_adv, dt, res.queries.cpu(), clf.queries)

    try:
        if "art" in SKIP:
            raise ImportError
        from art.attacks.evasion import HopSkipJump
        from art.estimators.classification import PyTorchClassifier

        one = Rows(model).eval()
        clf = PyTorchClassifier(one, loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                                nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")  # fmt: skip
        atk = HopSkipJump(clf, norm=2, max_iter=iters, max_eval=10000, init_eval=100,
                          init_size=100, batch_size=64, verbose=False)  # fmt: skip
        np.random.seed(0)
        per = torch.zeros(len(x), dtype=torch.long)
        advs = []
        t = time.perf_counter()
        for i in range(len(x)):  # ART attacks image after image anyway
            one.reset()
            advs.append(atk.generate(x[i : i + 1].numpy(), y=np.eye(10)[y[i : i + 1].numpy()]))
            per[i] = one.rows
        dt = time.perf_counter() - t
        report("ART HopSkipJump", torch.as_tensor(np.concatenate(advs)), dt, per, int(per.sum()))
    except ImportError:
        row("ART HopSkipJump", "not run", "", "", "", "", "", "")

    try:
        if "foolbox" in SKIP:
            raise ImportError
        import foolbox as fb

        cnt = Rows(model).eval()
        fmodel = fb.PyTorchModel(cnt, bounds=(0, 1))
        atk = fb.attacks.HopSkipJumpAttack(steps=iters, initial_gradient_eval_steps=100,
                                           max_gradient_eval_steps=10000, gamma=1.0,
                                           constraint="l2")  # fmt: skip
        torch.manual_seed(0)
        t = time.perf_counter()
        _, xa, _ = atk(fmodel, x, y, epsilons=None)
        dt = time.perf_counter() - t
        report("Foolbox HopSkipJumpAttack", xa, dt, None, cnt.rows)
    except ImportError:
        row("Foolbox HopSkipJumpAttack", "not run", "", "", "", "", "", "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="square,hsj")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--square-n", type=int, default=256)
    ap.add_argument("--square-queries", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--hsj-n", type=int, default=100)
    ap.add_argument("--hsj-queries", type=int, default=5000)
    ap.add_argument("--hsj-iters", type=int, default=16,
                    help="iterations of ART's and Foolbox's HopSkipJump (no query budget there)")
    ap.add_argument("--skip", default="", help="peers not to run: torchattacks,art,foolbox")
    args = ap.parse_args()
    SKIP.update(s for s in args.skip.split(",") if s)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    t = time.perf_counter()
    model, x, y = get_model_and_data(args.epochs)
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, 1 thread, model small_cnn "
        f"({args.epochs} epochs, trained in {time.perf_counter() - t:.0f} s), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    only = set(args.only.split(","))
    if "square" in only:
        xs, ys = x[: args.square_n], y[: args.square_n]
        print(f"clean accuracy on the {len(xs)} Square images: {robust(model, xs, ys).float().mean():.3f}")
        bench_square(model, xs, ys, args.square_queries, args.eps)
    if "hsj" in only:
        xh, yh = x[: args.hsj_n], y[: args.hsj_n]
        bench_hsj(model, xh, yh, args.hsj_queries, args.hsj_iters)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
