"""``xrobust attack``: attack a trained model on a dataset's test split.

Example:
    xrobust attack --model runs/digits --data digits --attack pgd --norm linf --eps 0.1 \\
        --steps 20 --out adv.npz
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import sys
from typing import Any

from xrobust.cli._common import add_model_data_args, check_out, float_range, int_range
from xrobust.errors import ConfigError

log = logging.getLogger(__name__)

#: Most iterations --steps accepts (a typo like 10000000 would otherwise run for days).
MAX_STEPS = 100_000


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attack",
        help="adversarial attack on a trained model: clean vs robust accuracy",
        description=(
            "Attack a trained model on the test split of a dataset, print clean and robust "
            "accuracy, and optionally save the adversarial examples (NPZ with x_adv, y, "
            "pred_clean, pred_adv). Attacks: see `xrobust list attacks`. By default examples "
            "already misclassified are skipped and an example stops being attacked once "
            "fooled (evaluation mode); --fixed-budget gives every example every step."
        ),
    )
    add_model_data_args(p)
    p.add_argument("--attack", default="pgd", help="attack name (default pgd)")
    p.add_argument("--norm", default="linf", help="linf (default) or l2")
    p.add_argument(
        "--eps", type=float_range(0.0), required=True, help="perturbation budget in input units"
    )
    p.add_argument(
        "--steps",
        type=int_range(1, MAX_STEPS),
        help=f"iterations, 1 to {MAX_STEPS} (attack default if omitted)",
    )
    p.add_argument(
        "--step-size", type=float_range(0.0, open_lo=True), help="step size in input units (PGD)"
    )
    p.add_argument("--restarts", type=int_range(0), help="random restarts (PGD, APGD)")
    p.add_argument(
        "--random-start",
        action="store_true",
        help="PGD: every run starts at a random point of the eps-ball (Madry et al.); by "
        "default the first run starts at the input and restarts start at random",
    )
    p.add_argument("--loss", help="loss: ce or margin (PGD/FGSM), ce or dlr (APGD)")
    p.add_argument(
        "--queries",
        type=int_range(1, 10**7),
        metavar="N",
        help="queries per example of a query-only attack (square, hop_skip_jump)",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any option of the attack's config (e.g. n_target_classes=5, preset=fast), "
        "checked against the attack; repeatable, wins over the flags above",
    )
    tg = p.add_mutually_exclusive_group()
    tg.add_argument(
        "--target-class", type=int_range(0), metavar="K", help="targeted attack towards class K"
    )
    tg.add_argument(
        "--targeted",
        action="store_true",
        help="targeted attack towards a random wrong class per example (seeded)",
    )
    p.add_argument("--limit", type=int_range(1), help="attack only the first N test samples")
    p.add_argument("--batch-size", type=int_range(1), default=256, help="batch size (default 256)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=int_range(0), default=0, help="random seed (default 0)")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16"],
        default="fp32",
        help="what the search's forward and backward passes run in (default fp32); every "
        "verdict is verified with an fp32 pass, so the robust accuracy is fp32's",
    )
    p.add_argument(
        "--amp",
        action="store_true",
        help="deprecated: --precision bf16 (fp16 where CUDA has no bf16); CUDA only",
    )
    p.add_argument(
        "--fixed-budget", action="store_true", help="every example gets every step (slower)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress on stderr (otherwise a bar on a terminal, a line every few seconds "
        "in a log)",
    )
    p.add_argument(
        "--no-tune-malloc",
        action="store_true",
        help="keep glibc's default allocator settings (tuning is on by default on Linux)",
    )
    p.add_argument("--out", help="write x_adv, y, pred_clean, pred_adv to this .npz file")
    p.set_defaults(func=run)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    if not math.isfinite(args.eps) or args.eps < 0:
        raise ConfigError(f"--eps must be a finite number >= 0, got {args.eps}")
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    if args.out is not None and not str(args.out).endswith(".npz"):
        raise ConfigError(f"--out must name a .npz file, got {args.out!r}")
    check_out(args.out, inputs=(args.data, getattr(args, "model", None), getattr(args, "onnx", None)))
    kw: dict[str, Any] = {
        "eps": args.eps,
        "norm": args.norm,
        "seed": args.seed,
        "early_stop": not args.fixed_budget,
        "precision": args.precision,
    }
    for opt in ("steps", "step_size", "restarts", "loss", "queries"):
        v = getattr(args, opt)
        if v is not None:
            kw[opt] = v
    if args.random_start:
        kw["random_start"] = True
    return kw


def _amp_precision(args: argparse.Namespace, device: Any) -> str:
    """The precision the deprecated ``--amp`` stands for (CUDA only, as before)."""
    import torch

    if device.type != "cuda":
        raise ConfigError(f"--amp needs a CUDA device; this run is on {device.type}")
    if args.precision != "fp32":
        raise ConfigError("give --precision or the deprecated --amp, not both")
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from xrobust._io import atomic_write_bytes
    from xrobust.attacks import ATTACKS, get_attack, parse_options
    from xrobust.cli._common import load_source
    from xrobust.cli._progress import ProgressRenderer
    from xrobust.data import as_tensors
    from xrobust.device import maybe_tune_allocator, resolve_device, set_auto_tune_allocator

    kw = _options(args)
    cls = ATTACKS.get(args.attack)
    kw.update(parse_options(cls.name, args.param))
    if (args.target_class is not None or args.targeted) and not cls.supports_targeted:
        raise ConfigError(f"attack {cls.name!r} cannot be targeted")
    device = resolve_device(args.device)
    if args.amp:
        kw["precision"] = _amp_precision(args, device)
    if args.no_tune_malloc:
        set_auto_tune_allocator(False)  # the attack's run() would tune it otherwise
    maybe_tune_allocator(device)  # CPU only; an allocator the user configured is left alone
    src = load_source(args, device=device, command="attack", class_flag="--target-class")
    ds = src.bundle
    kw["bounds"] = tuple(ds.spec.bounds) if ds.spec.bounds is not None else None
    try:
        atk = get_attack(args.attack, src.model, **kw)
    except ConfigError as exc:
        raise ConfigError(_flag_names(str(exc))) from exc
    x, y = as_tensors(ds.test, limit=args.limit)
    determinism = _determinism(src.model, x, device)
    num_classes = int(src.spec.num_classes)
    target: Any = None
    if args.target_class is not None:
        if not 0 <= args.target_class < num_classes:
            raise ConfigError(f"--target-class must be a class in 0..{num_classes - 1}")
        target = torch.full_like(y, args.target_class)
    elif args.targeted:
        g = torch.Generator().manual_seed(args.seed)
        target = (y + torch.randint(1, num_classes, y.shape, generator=g)) % num_classes
    keep = args.out is not None
    stage = f"{cls.name} {kw['norm']} eps={args.eps:g}"
    with ProgressRenderer(enabled=not args.no_progress) as progress:
        res = atk.run_loader(
            (x, y),
            batch_size=args.batch_size,
            keep_adv=keep,
            target=target,
            progress=lambda done, total: progress(stage, done, total),
        )
    summary = res.to_dict()
    summary["determinism"] = determinism
    summary["bound"] = "measured" if atk.requires_gradients else "upper"
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(args, cls, kw, ds, atk, res)
    if keep:
        assert res.x_adv is not None
        buf = io.BytesIO()
        arrays = {
            "x_adv": res.x_adv.cpu().numpy(),
            "y": res.y.cpu().numpy(),
            "pred_clean": res.pred_clean.cpu().numpy(),
            "pred_adv": res.pred_adv.cpu().numpy(),
            "norms": res.norms.cpu().numpy(),
        }
        if res.target is not None:
            arrays["target"] = res.target.cpu().numpy()
        np.savez(buf, **arrays)
        atomic_write_bytes(args.out, buf.getvalue())
        if not args.json:
            print(f"saved {res.n} adversarial examples to {args.out}")
    return 3 if res.partial else 0  # 3: incomplete, as for `xrobust audit`


def _print_summary(
    args: argparse.Namespace, cls: Any, kw: dict[str, Any], ds: Any, atk: Any, res: Any
) -> None:
    """The human-readable lines of an attack run (``--json`` prints the summary instead)."""
    mode = "fixed budget" if args.fixed_budget else "evaluation mode"
    print(
        f"{cls.name} {kw['norm']} eps={args.eps:g} ({mode}) on {res.n} samples of "
        f"{args.data or ds.spec.name}: clean accuracy {res.clean_accuracy:.4f}, "
        f"robust accuracy {'at most ' if not atk.requires_gradients else ''}"
        f"{res.robust_accuracy:.4f}, success rate {res.success_rate:.4f} [{res.time_s:.1f}s]"
    )
    if res.precision != "fp32":
        print(f"search passes in {res.precision}; every verdict verified in fp32")
    if not atk.requires_gradients:
        print(
            f"robust accuracy is an upper bound: {cls.name} is a query-only attack; a "
            "white-box attack may find adversarial examples it did not"
        )
    if res.queries is not None and res.n:
        q = res.queries.float()
        print(
            f"queries per example: median {float(q.median()):g}, max {int(q.max())}, "
            f"total {int(res.queries.sum())}"
        )
    if res.partial:
        print(f"PARTIAL: {res.stop_reason}")
        print("the robust accuracy above covers part of the examples only: exit status 3")


def _determinism(model: Any, x: Any, device: Any) -> dict[str, Any]:
    """The determinism check the audit runs (two passes over the same 8 examples); a model
    whose answers change is named on standard error: its robust accuracy is not evidence."""
    from xrobust.validation import output_determinism

    xb = x[: min(8, len(x))]
    if hasattr(model, "parameters"):
        xb = xb.to(device)
    from xrobust.errors import QueryBudgetExhausted

    try:
        d = output_determinism(model, xb)
    except QueryBudgetExhausted:
        print("note: the determinism check was skipped: the query budget does not cover it",
              file=sys.stderr)  # fmt: skip
        return {"deterministic": None, "skipped": "query budget"}
    if not d["deterministic"]:
        print(
            f"WARNING: the model is not deterministic: two passes over the same {d['n']} inputs "
            f"differ by up to {d['max_abs_diff']:.3g}"
            + (f" ({d['changed_predictions']} predictions changed)" if d["changed_predictions"] else "")
            + "; attacks chase noise and the robust accuracy below is not reproducible "
            "(dropout left on, a random layer, a noisy server?)",
            file=sys.stderr,
        )
    return d


#: attack option -> the flag that sets it, so library errors name what the user typed.
_FLAGS = {
    "step_size": "--step-size",
    "random_start": "--random-start",
    "early_stop": "--fixed-budget",
    "restarts": "--restarts",
    "queries": "--queries",
}


def _flag_names(msg: str) -> str:
    import re

    for opt, flag in _FLAGS.items():
        msg = re.sub(rf"(?<![-\w]){opt}\b", flag, msg)
    return msg
