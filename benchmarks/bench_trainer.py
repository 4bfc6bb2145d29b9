"""Trainer overhead: time per epoch of ``Trainer.fit`` against a plain hand-written PyTorch
loop over the same model, data, batch size, optimizer, schedule and device, in one run,
with interleaved repeats. Optionally (``--targets``) times the two accuracy targets.

Usage:
    .venv/bin/python benchmarks/bench_trainer.py [--device cpu] [--repeats 5] [--epochs 3]
        [--threads 2] [--targets]
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from xrobust.data import load_dataset
from xrobust.device import resolve_device
from xrobust.models import build_model
from xrobust.trainer import TrainConfig, Trainer, train
from xrobust.trainer.trainer import _lr_lambda


def plain_loop(model, x, y, epochs: int, batch_size: int, lr: float, wd: float, device, seed: int):  # type: ignore[no-untyped-def]
    """What a user would write by hand: shuffled mini-batches, AdamW, one-cycle schedule,
    running loss/accuracy. Returns the time of each epoch."""
    model = model.to(device).train()
    x, y = x.to(device), y.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    steps = math.ceil(len(x) / batch_size) * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda("onecycle", steps))
    g = torch.Generator().manual_seed(seed)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(x), generator=g).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = x[idx], y[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(yb)
            correct += (logits.argmax(1) == yb).sum()
        _ = (loss_sum.item() / len(x), correct.item() / len(x))
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--targets", action="store_true", help="also time the accuracy targets")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    ds = load_dataset("digits")
    x, y = ds.train.tensors
    torch.manual_seed(0)
    base = build_model("small_cnn", ds.spec)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, device=str(device))
    # warm-up both paths once
    Trainer(copy.deepcopy(base), cfg, spec=ds.spec).fit(ds.train, progress=False)
    plain_loop(copy.deepcopy(base), x, y, 1, args.batch_size, cfg.lr, cfg.weight_decay, device, 0)

    tr_epoch, pl_epoch, tr_fit, pl_fit = [], [], [], []
    tr_cpu, pl_cpu = [], []  # process CPU time per fit: robust to other processes' load
    for r in range(args.repeats):
        order = ("trainer", "plain") if r % 2 == 0 else ("plain", "trainer")
        for which in order:
            model = copy.deepcopy(base)
            c0 = time.process_time()
            t0 = time.perf_counter()
            if which == "trainer":
                hist = Trainer(model, cfg, spec=ds.spec).fit(ds.train, progress=False)
                tr_fit.append(time.perf_counter() - t0)
                tr_cpu.append(time.process_time() - c0)
                tr_epoch += [rec.time_s for rec in hist.records]
            else:
                times = plain_loop(
                    model, x, y, args.epochs, args.batch_size, cfg.lr, cfg.weight_decay, device, r
                )
                pl_fit.append(time.perf_counter() - t0)
                pl_cpu.append(time.process_time() - c0)
                pl_epoch += times
    med = statistics.median
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, "
        f"python {platform.python_version()}, device {device}, threads {torch.get_num_threads()}"
    )
    print(
        f"# digits 1x28x28, {len(x)} train images, small_cnn, batch {args.batch_size}, AdamW + one-cycle,"
        f" {args.epochs} epochs x {args.repeats} interleaved repeats"
    )

    def pct(a: float, b: float) -> str:
        return f"{100 * (a / b - 1):+.1f}%"

    print(
        "| loop | median wall s/epoch | min wall s/epoch | median wall s/fit | median CPU s/fit |"
    )
    print("|---|---|---|---|---|")
    for name, ep, fit, cpu in (
        ("plain PyTorch", pl_epoch, pl_fit, pl_cpu),
        ("xrobust Trainer", tr_epoch, tr_fit, tr_cpu),
    ):
        print(f"| {name} | {med(ep):.3f} | {min(ep):.3f} | {med(fit):.3f} | {med(cpu):.3f} |")
    print(
        f"Trainer overhead: wall per epoch median {pct(med(tr_epoch), med(pl_epoch))}, "
        f"min {pct(min(tr_epoch), min(pl_epoch))}; wall per fit {pct(med(tr_fit), med(pl_fit))}; "
        f"CPU per fit median {pct(med(tr_cpu), med(pl_cpu))}, min {pct(min(tr_cpu), min(pl_cpu))}"
    )
    if args.targets:
        print("| target | test accuracy | train() wall s |")
        print("|---|---|---|")
        for data, arch in (("digits", "small_cnn"), ("breast_cancer", "mlp")):
            t0 = time.perf_counter()
            _, h = train(data, arch, TrainConfig(device=str(device)), progress=False)
            print(
                f"| {data} + {arch} (defaults) | {h.test_acc:.4f} | {time.perf_counter() - t0:.1f} |"
            )


if __name__ == "__main__":
    main()
