"""``xrobust train``: train a registered model on a built-in dataset or the user's data.

Example:
    xrobust train --data digits --model small_cnn --epochs 5 --out runs/digits
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from xrobust.cli._common import check_out, float_range, int_range
from xrobust.errors import ConfigError

_OPTIONS = ("sgd", "adamw")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model and write a checkpoint (run directory)",
        description=(
            "Train a registered architecture and write the run directory (model.safetensors, "
            "model.json, metrics.jsonl, resumable state). Other commands accept that directory "
            "as --model. Runs under torchrun for multi-process (DDP) training."
        ),
    )
    g = p.add_argument_group("data and model")
    g.add_argument(
        "--data",
        required=True,
        help="built-in dataset name (see `xrobust list datasets`) or a path to your data file/folder",
    )
    g.add_argument("--model", required=True, help="architecture (see `xrobust list models`)")
    g.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture option, value as JSON (e.g. mlp: hidden=[128,64]; small_cnn: "
        "channels=[16,32]; resnet: width=16); repeatable; `xrobust list models` shows them",
    )
    g.add_argument(
        "--size",
        type=int_range(1, 1024),
        help="image side to train at (digits: 8 to 1024, default 28; your images: as stored)",
    )
    g.add_argument("--target", metavar="COLUMN", help="label column of a CSV file")
    g.add_argument("--out", help="run directory (default: runs/<data>_<model>)")
    g = p.add_argument_group("training")
    g.add_argument(
        "--epochs", type=int_range(1, 100_000), help="passes over the training set (default 15)"
    )
    g.add_argument("--batch-size", type=int_range(1), help="examples per step (default 64)")
    g.add_argument(
        "--lr",
        type=float_range(0.0, open_lo=True),
        help="peak learning rate (default 4e-3 AdamW, 0.05 SGD)",
    )
    g.add_argument("--optimizer", choices=_OPTIONS, help="optimizer (default adamw)")
    g.add_argument("--weight-decay", type=float_range(0.0), help="weight decay (default 1e-4)")
    g.add_argument(
        "--schedule",
        choices=("none", "cosine", "onecycle"),
        help="learning-rate schedule (default onecycle)",
    )
    g.add_argument(
        "--label-smoothing", type=float_range(0.0), help="label smoothing in [0, 1) (default 0.1)"
    )
    g.add_argument(
        "--val-fraction",
        type=float_range(0.0),
        help="hold out this share of the training set for validation",
    )
    g.add_argument(
        "--patience",
        type=int_range(1),
        help="early stopping patience in epochs (needs --val-fraction)",
    )
    g.add_argument("--seed", type=int_range(0), help="random seed (default 0)")
    g.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    g.add_argument(
        "--checkpoint-every-steps",
        type=int_range(1),
        help="also save the resumable state every N steps",
    )
    g = p.add_argument_group("hardware")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    g.add_argument(
        "--amp",
        nargs="?",
        const="auto",
        choices=("auto", "bf16", "fp16"),
        help="mixed precision on CUDA (bf16 where supported, else fp16); refused on CPU",
    )
    g.add_argument("--compile", action="store_true", help="use torch.compile")
    g.add_argument(
        "--num-workers", type=int_range(0, 64), help="DataLoader workers for file-backed datasets"
    )
    g.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress on stderr (otherwise a bar on a terminal, a line every few seconds "
        "in a log)",
    )
    g = p.add_argument_group("adversarial training")
    g.add_argument(
        "--adversarial", choices=("pgd", "fgsm", "trades"), help="train on adversarial examples"
    )
    g.add_argument(
        "--eps", type=float_range(0.0), help="perturbation budget in input units (default 0.1)"
    )
    g.add_argument("--adv-steps", type=int_range(1, 100_000), help="attack iterations (default 10)")
    g.add_argument("--adv-step-size", type=float_range(0.0, open_lo=True), help="attack step size")
    g.add_argument("--adv-norm", choices=("linf", "l2"), help="perturbation norm (default linf)")
    g.add_argument(
        "--trades-beta", type=float_range(0.0), help="TRADES robustness weight (default 6)"
    )
    p.set_defaults(func=run)


def _model_args(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--model-arg expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _epoch_line(rec: Any) -> str:
    """One epoch's metrics as a line (what the trainer measured, not a bar)."""
    parts = [f"epoch {rec.epoch}: loss {rec.train_loss:.4f}", f"acc {rec.train_acc:.4f}"]
    if rec.train_adv_acc is not None:
        parts.append(f"adv_acc {rec.train_adv_acc:.4f}")
    if rec.val_acc is not None:
        parts.append(f"val_acc {rec.val_acc:.4f}")
    parts.append(f"{rec.time_s:.1f} s")
    return ", ".join(parts)


#: TrainConfig field -> the flag that sets it, so errors name what the user typed.
_FLAGS = {
    "adv_eps": "--eps",
    "adv_steps": "--adv-steps",
    "adv_step_size": "--adv-step-size",
    "adv_norm": "--adv-norm",
    "label_smoothing": "--label-smoothing",
    "val_fraction": "--val-fraction",
    "weight_decay": "--weight-decay",
    "batch_size": "--batch-size",
    "checkpoint_every_steps": "--checkpoint-every-steps",
    "num_workers": "--num-workers",
    "trades_beta": "--trades-beta",
}


def _flag_names(msg: str) -> str:
    import re

    for field, flag in _FLAGS.items():
        msg = re.sub(rf"\b{field}\b", flag, msg)
    for field in ("epochs", "lr", "optimizer", "schedule", "patience", "seed", "device", "amp"):
        msg = re.sub(rf"(?<![-\w]){field}\b", f"--{field}", msg)
    return msg


def run(args: argparse.Namespace) -> int:
    from xrobust.cli._progress import ProgressRenderer
    from xrobust.trainer import TrainConfig, train

    fields = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "optimizer": args.optimizer,
        "weight_decay": args.weight_decay,
        "schedule": args.schedule,
        "label_smoothing": args.label_smoothing,
        "val_fraction": args.val_fraction,
        "patience": args.patience,
        "seed": args.seed,
        "device": args.device,
        "amp": args.amp,
        "num_workers": args.num_workers,
        "checkpoint_every_steps": args.checkpoint_every_steps,
        "adversarial": args.adversarial,
        "adv_eps": args.eps,
        "adv_steps": args.adv_steps,
        "adv_step_size": args.adv_step_size,
        "adv_norm": args.adv_norm,
        "trades_beta": args.trades_beta,
    }
    cfg_kwargs = {k: v for k, v in fields.items() if v is not None}
    if args.compile:
        cfg_kwargs["compile"] = True
    try:
        config = TrainConfig(**cfg_kwargs)
    except ConfigError as exc:
        raise ConfigError(_flag_names(str(exc))) from exc
    if config.patience is not None and not config.val_fraction:
        raise ConfigError("--patience needs a validation split: add --val-fraction (e.g. 0.1)")
    if args.amp:
        from xrobust.device import resolve_device

        dev = resolve_device(config.device)
        if dev.type != "cuda":
            raise ConfigError(f"--amp needs a CUDA device; this run is on {dev.type}")
    out = Path(args.out) if args.out else Path("runs") / f"{Path(str(args.data)).stem}_{args.model}"
    check_out(out, folder=True)
    main = os.environ.get("RANK", "0") == "0"
    t0 = time.perf_counter()
    with ProgressRenderer(enabled=not args.no_progress and main) as progress:
        _model, history = train(
            args.data,
            args.model,
            config,
            out,
            model_kwargs=_model_args(args.model_arg),
            data_kwargs={"size": args.size, "target": args.target},
            resume=args.resume,
            progress=progress,
        )
    elapsed = time.perf_counter() - t0
    if main:
        if not args.no_progress:
            for rec in history.records:
                print(_epoch_line(rec), file=sys.stderr)
        last = history.last
        note = " (stopped early)" if history.stopped_early else ""
        resumed = f", resumed from epoch {history.resumed_from[0]}" if history.resumed_from else ""
        if last is not None:
            n_test = int(history.test_n or 0)
            on = f" on {n_test} test examples" if n_test else ""
            print(
                f"test accuracy {history.test_acc:.4f}{on} (loss {history.test_loss:.4f}); "
                f"train accuracy {last.train_acc:.4f} after {len(history.records)} epochs"
                f"{note}{resumed}; {elapsed:.1f} s"
            )
        print(f"checkpoint: {out} (model.safetensors, model.json, metrics.jsonl)")
    return 0
