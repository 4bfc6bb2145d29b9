"""``xrobust export``: a trained run as an ONNX file, verified with onnxruntime."""

from __future__ import annotations

import argparse
import sys

from xrobust.cli._common import float_range, int_range


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained model to ONNX (verified with onnxruntime)",
        description=(
            "Export a run directory written by `xrobust train` to an ONNX file with a dynamic "
            "batch dimension. What the run applies to its inputs outside the network (the "
            "feature standardisation of a model trained on a table) goes inside the graph, so "
            "the file takes raw rows as the data file holds them; feature names, classes, "
            "bounds and the preprocessing are recorded in the file's metadata (key 'xrobust'), "
            "which `--onnx FILE --data ...` reads. The file is checked with onnxruntime against "
            "torch on the model's test data before it is written; above --tol nothing is "
            "written."
        ),
    )
    p.add_argument(
        "--model", required=True, metavar="RUN_DIR", help="run directory written by `xrobust train`"
    )
    p.add_argument(
        "--format",
        default="onnx",
        metavar="FORMAT",
        help="export format (default: onnx; the only one)",
    )
    p.add_argument(
        "--out", required=True, metavar="FILE", help="the file to write, e.g. model.onnx"
    )
    p.add_argument(
        "--opset", type=int_range(), metavar="N",
        help="ONNX opset (default: 18): one torch's exporter writes (18 to 23 with torch 2.13), "
        "else refused before any work; the written file is checked to have it",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=int_range(1), metavar="N",
        help="fix the batch dimension to N (default: dynamic batch, any size at run time)",
    )  # fmt: skip
    p.add_argument(
        "--tol", type=float_range(0.0, open_lo=True), default=1e-4,
        help="largest allowed |onnxruntime - torch| output difference (default: 1e-4)",
    )  # fmt: skip
    p.add_argument(
        "--rows", type=int_range(1), default=64,
        help="test rows to verify on (default: 64)",
    )  # fmt: skip
    p.add_argument(
        "--allow-incomplete", action="store_true",
        help="export the checkpoint of a training run that did not finish",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from xrobust.cli._common import check_out
    from xrobust.errors import ConfigError
    from xrobust.models.export import FORMATS, export_onnx

    fmt = str(args.format).strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {args.format!r}; xrobust exports: {', '.join(FORMATS)}")
    check_out(args.out)
    res = export_onnx(
        args.model,
        args.out,
        dynamic_batch=args.batch_size is None,
        batch_size=args.batch_size,
        opset=args.opset,
        rows=args.rows,
        tol=args.tol,
        allow_incomplete=args.allow_incomplete,
    )
    batch = "dynamic batch" if res.dynamic_batch else f"fixed batch {res.batch_size}"
    print(
        f"wrote {res.path} (ONNX opset {res.opset}, {batch}, input {res.input_name!r} "
        f"(N, {', '.join(map(str, res.input_shape))}), output {res.output_name!r}); "
        f"onnxruntime matches torch within {res.max_abs_diff:.2g} on {res.rows_checked} rows "
        f"of {res.check_inputs}"
    )
    if res.preprocessing_embedded:
        print(
            "the feature standardisation of the run is inside the graph: the file takes raw "
            "feature rows (as in the CSV), recorded in its metadata"
        )
    sys.stdout.flush()
    return 0
