"""``xrobust explain``: attribution maps of a trained model on some of its test samples.

Example:
    xrobust explain --model runs/digits --data digits --method integrated_gradients \\
        --samples 0:16 --out fig.png
    xrobust explain --model runs/digits --data digits \\
        --compare saliency,integrated_gradients,gradcam --out grid.png --save-npz maps.npz
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

from xrobust.cli._common import add_model_data_args, check_out, int_range
from xrobust.errors import ConfigError

_FIG_FORMATS = {".png", ".pdf", ".svg", ".jpg", ".jpeg"}
#: Most samples one figure draws (heatmap grid; comparison grid).
MAX_PANELS = 16
MAX_COMPARE_ROWS = 8


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="attribution maps (why the model decides) as a figure and/or arrays",
        description=(
            "Explain a trained model's decisions on test samples with one method "
            "(--method) or a grid comparing several (--compare). Images get heatmaps over "
            "the input; tabular data gets bar charts of per-feature attributions. "
            "Methods: see `xrobust list explainers`."
        ),
    )
    add_model_data_args(p)
    p.add_argument(
        "--method", default="integrated_gradients", help="explainer (default integrated_gradients)"
    )
    p.add_argument(
        "--compare", help="comma-separated explainers for a comparison grid (overrides --method)"
    )
    p.add_argument(
        "--samples",
        default="0:8",
        help=f"test samples: START:STOP, an index, or a comma list (default 0:8); a figure "
        f"draws at most {MAX_PANELS} ({MAX_COMPARE_ROWS} with --compare)",
    )
    p.add_argument(
        "--target-class",
        default="pred",
        metavar="CLASS",
        help="class to explain: 'pred' (predicted, default), 'label' (true label) or a class index",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='explainer option, value as JSON (e.g. n_steps=32, baselines="blur"); repeatable',
    )
    p.add_argument(
        "--normalise",
        choices=("per_map", "shared"),
        default="per_map",
        help="colour scale per map or shared by all maps (default per_map)",
    )
    p.add_argument("--out", help="figure file (.png, .pdf, .svg)")
    p.add_argument("--save-npz", help="write the raw attributions, inputs and targets to NPZ")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--seed", type=int_range(0), default=0, help="seed for stochastic methods (default 0)"
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress on stderr (otherwise a bar on a terminal, a line every few seconds "
        "in a log)",
    )
    p.set_defaults(func=run)


def _indices(text: str, n: int) -> list[int]:
    text = text.strip()
    bad_form = ConfigError(
        f"--samples {text!r} is not START:STOP, an index or a comma list of indices"
    )
    if ":" in text:
        start_s, _, stop_s = text.partition(":")
        try:
            start = int(start_s) if start_s.strip() else 0
            stop = int(stop_s) if stop_s.strip() else n
        except ValueError:
            raise bad_form from None
        if not 0 <= start < n:
            raise ConfigError(f"--samples: start {start} is outside the test set (0..{n - 1})")
        if stop > n:
            raise ConfigError(
                f"--samples {text!r}: the test set has {n} samples (indices 0..{n - 1}); "
                f"expected STOP <= {n}"
            )
        if stop <= start:
            raise ConfigError(f"--samples {text!r}: STOP must be greater than START")
        idx = list(range(start, stop))
    else:
        try:
            idx = [int(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise bad_form from None
    if not idx:
        raise ConfigError(f"--samples {text!r} selects no sample (the test set has {n})")
    bad = [i for i in idx if i < 0 or i >= n]
    if bad:
        raise ConfigError(f"--samples: index {bad[0]} is outside the test set (0..{n - 1})")
    return idx


def _params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _target(text: str, y: Any, num_classes: int) -> Any:
    t = text.strip().lower()
    if t in ("pred", "predicted", "none"):
        return None
    if t == "label":
        return y
    try:
        k = int(t)
    except ValueError as exc:
        raise ConfigError(
            f"--target-class must be 'pred', 'label' or a class index, got {text!r}"
        ) from exc
    if not 0 <= k < num_classes:
        raise ConfigError(
            f"--target-class {k} is outside the model's {num_classes} classes "
            f"(0..{num_classes - 1})"
        )
    return k


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from xrobust._io import atomic_write_bytes
    from xrobust.cli._common import load_source
    from xrobust.cli._progress import ProgressRenderer
    from xrobust.data import as_tensors
    from xrobust.device import resolve_device
    from xrobust.explain import EXPLAINERS, get_explainer, global_importance
    from xrobust.explain import figures as F

    methods = (
        [m.strip() for m in args.compare.split(",") if m.strip()] if args.compare else [args.method]
    )
    if not methods:
        raise ConfigError("--compare lists no method")
    for m in methods:
        EXPLAINERS.get(m)  # unknown names fail here, with a did-you-mean, before any work
    if args.out and Path(args.out).suffix.lower() not in _FIG_FORMATS:
        raise ConfigError(
            f"--out {args.out!r}: unknown figure format; use one of {', '.join(sorted(_FIG_FORMATS))}"
        )
    if not args.out and not args.save_npz:
        raise ConfigError("nothing to write: give --out FIGURE and/or --save-npz FILE")
    inputs = (getattr(args, "data", None), getattr(args, "model", None), getattr(args, "onnx", None))
    check_out(args.out, inputs=inputs)
    check_out(args.save_npz, flag="--save-npz", inputs=inputs)
    if args.out and args.save_npz and Path(args.out).resolve() == Path(args.save_npz).resolve():
        raise ConfigError("--out and --save-npz name the same file; give two paths")
    params = _params(args.param)
    device = resolve_device(args.device)
    src = load_source(args, device=device, command="explain", class_flag="--target-class")
    ds, spec = src.bundle, src.spec
    explainers = {m: get_explainer(m, src.model, **params) for m in methods}  # options checked
    x_all, y_all = as_tensors(ds.test)
    idx = _indices(args.samples, len(x_all))
    if args.out and spec.modality == "image":
        cap = MAX_COMPARE_ROWS if len(methods) > 1 else MAX_PANELS
        if len(idx) > cap:
            raise ConfigError(
                f"--samples {args.samples!r} selects {len(idx)} samples; a figure draws at most "
                f"{cap}: select fewer, or write all of them with --save-npz only"
            )
    x, y = x_all[idx], y_all[idx]
    target = _target(args.target_class, y, spec.num_classes)
    names = list(spec.feature_names) if spec.feature_names else None

    explanations = {}
    with ProgressRenderer(enabled=not args.no_progress) as progress:
        for k, m in enumerate(methods):
            progress(f"explain {m}", k, len(methods))
            explanations[m] = explainers[m].explain(
                x, target, seed=args.seed, feature_names=names if x.ndim == 2 else None
            )
        progress("explain", len(methods), len(methods))

    if args.out:
        first = explanations[methods[0]]
        if spec.modality == "tabular" or x.ndim == 2:
            if len(methods) > 1:
                raise ConfigError("--compare draws image grids; for tabular data pass one --method")
            fig = F.tabular_bar_figure(global_importance(first, names))
        elif len(methods) > 1:
            fig = F.compare_methods_figure(x, explanations, normalise=args.normalise)
        else:
            fig = F.heatmap_figure(
                x,
                first,
                normalise=args.normalise,
                titles=[
                    f"#{i} y={int(yy)} t={int(tt)}"
                    for i, yy, tt in zip(idx, y.tolist(), first.target.tolist())
                ],
            )
        buf = io.BytesIO()
        fig.savefig(buf, format=Path(args.out).suffix.lstrip(".").lower().replace("jpg", "jpeg"))
        atomic_write_bytes(args.out, buf.getvalue())
        print(f"wrote {args.out}")
    if args.save_npz:
        arrays: dict[str, Any] = {"x": x.numpy(), "y": y.numpy(), "indices": np.array(idx)}
        for m, e in explanations.items():
            arrays[f"attr_{m}"] = e.numpy()
            arrays[f"target_{m}"] = e.target.cpu().numpy()
            if e.delta is not None:
                arrays[f"delta_{m}"] = e.delta.cpu().numpy()
        if names:
            arrays["feature_names"] = np.array(names)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(args.save_npz, buf.getvalue())
        print(f"wrote {args.save_npz}")
    for m, e in explanations.items():
        extra = ""
        if e.delta is not None:
            extra = f", max |convergence delta| {float(e.delta.abs().max()):.2e}"
        print(f"{m}: {len(idx)} samples, targets {e.target.tolist()}{extra}")
    return 0
