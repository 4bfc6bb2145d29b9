"""Pieces shared by the subcommands: the model + data options, output checks, number types.

Every command that analyses a trained model takes ``--model RUN``, ``--data NAME_OR_PATH``
(default: the data the model was trained on, as recorded in its checkpoint), ``--target
COLUMN`` (the label column of a CSV, as on ``xrobust train``; default: the recorded one) and
``--allow-incomplete``. Data is read through the model's input schema
(:func:`xrobust.data.schema.load_for_model`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any

from xrobust.errors import ConfigError

# ------------------------------------------------------------------ argparse value types


def _number(kind: type, lo: float | None, hi: float | None, what: str) -> Any:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v

    parse.__name__ = what  # argparse names the type in "invalid <name> value" messages
    return parse


def int_range(lo: int | None = None, hi: int | None = None) -> Any:
    """An argparse type: an integer in [lo, hi]."""
    if lo is not None and hi is not None:
        what = f"an integer from {lo} to {hi}"
    elif lo is not None:
        what = f"an integer >= {lo}"
    else:
        what = "an integer"
    return _number(int, lo, hi, what)


def float_range(lo: float | None = None, hi: float | None = None, *, open_lo: bool = False) -> Any:
    """An argparse type: a finite float in [lo, hi] (or (lo, hi] with ``open_lo``)."""
    if open_lo and lo is not None:
        base = _number(float, None, hi, "")

        def parse(text: str) -> float:
            v = base(text)
            if v <= lo:
                raise argparse.ArgumentTypeError(f"expected a number > {lo:g}, got {text!r}")
            return v  # type: ignore[no-any-return]

        return parse
    if lo is not None and hi is not None:
        what = f"a number from {lo:g} to {hi:g}"
    elif lo is not None:
        what = f"a number >= {lo:g}"
    else:
        what = "a finite number"
    return _number(float, lo, hi, what)


# ------------------------------------------------------------------ output paths


def check_out(
    path: str | os.PathLike[str] | None,
    *,
    flag: str = "--out",
    folder: bool = False,
    inputs: tuple[Any, ...] = (),
) -> None:
    """Fail before any work when ``path`` cannot be written (not writable, under a file, ...)
    or must not be (a link, a device or pipe, one of the command's ``inputs``: see
    :func:`xrobust._io.safe_output`).

    Nothing is created: the nearest existing ancestor must be a writable folder.
    """
    if path is None:
        return
    from xrobust._io import safe_output

    safe_output(path, flag=flag, folder=folder, inputs=tuple(inputs))
    p = Path(path)
    if folder and p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {str(p)!r} is a file; expected a folder")
    if not folder and p.is_dir():
        raise ConfigError(f"{flag} {str(p)!r} is a folder; expected a file name")
    target = p if folder else p.parent
    anc = target if str(target) else Path(".")
    while not anc.exists():
        if anc.parent == anc:
            break
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise ConfigError(f"{flag} {str(p)!r}: {str(anc)!r} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {str(p)!r}: folder {str(anc)!r} is not writable")
    if not folder and p.exists() and not os.access(p, os.W_OK) and not os.access(p.parent, os.W_OK):
        raise ConfigError(f"{flag} {str(p)!r} is not writable")


# ------------------------------------------------------------------ model and data


def add_model_data_args(p: argparse.ArgumentParser | Any, *, model_required: bool = True) -> None:
    """``--model`` (or ``--onnx`` / ``--endpoint``), ``--data``, ``--target`` and
    ``--allow-incomplete``, and the black-box source options."""
    p.add_argument(
        "--model", metavar="RUN_DIR",
        help="run directory written by `xrobust train`"
        + (" (or give --onnx / --endpoint)" if model_required else ""),
    )  # fmt: skip
    add_source_args(p)
    p.add_argument(
        "--data",
        metavar="NAME_OR_PATH",
        help="built-in dataset name or path to your data; its test split is used "
        "(default: the data the model was trained on, as recorded in its checkpoint)",
    )
    p.add_argument(
        "--target",
        metavar="COLUMN",
        help="label column of a CSV file, as on `xrobust train` (default: the column the "
        "model was trained with)",
    )
    p.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="use the checkpoint of a training run that did not finish (refused by default)",
    )


def add_source_args(p: argparse.ArgumentParser | Any) -> None:
    """The black-box sources and their options (``--onnx``, ``--endpoint``, ...)."""
    p.add_argument(
        "--onnx", metavar="FILE.onnx",
        help="audit an ONNX model (TensorFlow, CNTK, scikit-learn exports) instead of --model; "
        "needs --data",
    )  # fmt: skip
    p.add_argument(
        "--tflite", metavar="FILE.tflite",
        help="audit a TensorFlow Lite model (float, or quantized int8/uint8) instead of --model, "
        "as a black box; needs --data",
    )  # fmt: skip
    p.add_argument(
        "--tflite-signature", metavar="NAME",
        help="the signature of a --tflite model with several (default: its only one)",
    )  # fmt: skip
    p.add_argument(
        "--endpoint", metavar="URL",
        help="an HTTP prediction endpoint (TF Serving / Vertex AI JSON), or sagemaker://NAME "
        "(an Amazon SageMaker endpoint, signed with the AWS credential chain), instead of "
        "--model; needs --data",
    )  # fmt: skip
    p.add_argument(
        "--aws-region", metavar="REGION",
        help="the AWS region of a sagemaker:// --endpoint (default: AWS_REGION / "
        "AWS_DEFAULT_REGION or the profile's)",
    )  # fmt: skip
    p.add_argument(
        "--aws-profile", metavar="PROFILE",
        help="the AWS profile whose credentials sign sagemaker:// requests (default: "
        "AWS_PROFILE, else the standard chain)",
    )  # fmt: skip
    p.add_argument(
        "--endpoint-url", metavar="URL",
        help="another SageMaker-runtime URL for a sagemaker:// --endpoint (a VPC endpoint, or "
        "a local server such as examples/sagemaker_local.py)",
    )  # fmt: skip
    p.add_argument(
        "--content-type", metavar="TYPE",
        help="the Content-Type of sagemaker:// requests, a JSON type (default application/json)",
    )  # fmt: skip
    p.add_argument(
        "--output", choices=["logits", "probabilities", "labels"],
        help="what the --onnx / --endpoint model answers (default: logits, or read from the "
        "ONNX graph)",
    )  # fmt: skip
    p.add_argument(
        "--output-name", metavar="NAME",
        help="the output of an --onnx / --endpoint model with several outputs to read as the "
        "class scores (default: the only one, or the one that is clearly the class scores; "
        "else refused)",
    )  # fmt: skip
    p.add_argument(
        "--resize", action="store_true",
        help="resize images of another size than the model's input (a warning names both "
        "shapes); refused by default",
    )  # fmt: skip
    p.add_argument(
        "--train-data", metavar="TRAIN.csv",
        help="with --onnx and a CSV --data: the table the model was trained on; its training "
        "split's statistics standardise --data (files from `xrobust export` carry them)",
    )  # fmt: skip
    p.add_argument(
        "--raw-features", action="store_true",
        help="with --onnx and a CSV --data: feed the values unstandardised (the model scales "
        "its own inputs, e.g. a scikit-learn pipeline)",
    )  # fmt: skip
    p.add_argument(
        "--query-budget", type=int_range(1), metavar="N",
        help="stop cleanly after the model was asked about N rows in total (partial results)",
    )  # fmt: skip
    p.add_argument(
        "--header", action="append", default=[], metavar="NAME=ENV_VAR",
        help="endpoint request header NAME whose value is read from the environment variable "
        "ENV_VAR (give the variable's NAME, never the secret; it is never printed or stored); "
        "repeatable, e.g. `export XR_API_KEY=...` then --header X-Api-Key=XR_API_KEY; for "
        "Authorization put the whole value in the variable (XR_TOKEN='Bearer ...')",
    )  # fmt: skip
    p.add_argument(  # the choices are endpoint.URL_PROTOCOLS (tested; not imported: torch)
        "--endpoint-protocol", choices=["instances", "inputs", "v2", "v2-binary"],
        help="protocol of the --endpoint: TF Serving / Vertex rows ({\"instances\": ...}, "
        "the default), columnar ({\"inputs\": ...}) or v2, the Open Inference Protocol of "
        "KServe, Triton and MLServer (--endpoint http://HOST:PORT/v2/models/NAME); v2-binary: "
        "with its binary tensor extension (KServe, Triton: raw bytes instead of JSON numbers)",
    )  # fmt: skip
    p.add_argument(
        "--endpoint-timeout", type=float_range(0.0, open_lo=True), metavar="SECONDS",
        help="per-request deadline of the --endpoint (default 30; failed requests are "
        "retried with backoff on 429, 5xx and connection errors)",
    )  # fmt: skip
    p.add_argument(
        "--endpoint-batch-size", type=int_range(1), metavar="ROWS",
        help="rows per request to the --endpoint (default 64)",
    )  # fmt: skip
    p.add_argument(
        "--endpoint-concurrency", type=int_range(1), metavar="N",
        help="requests to the --endpoint in flight at once (default 4; their answers share "
        "one 256 MiB limit)",
    )  # fmt: skip
    p.add_argument(
        "--white-box", action="store_true",
        help="with --onnx: convert the graph to a differentiable torch module (onnx2torch), "
        "checked against onnxruntime on the data first, so the gradient attacks run too",
    )  # fmt: skip
    p.add_argument(
        "--layout", choices=["NCHW", "NHWC"],
        help="input layout the --onnx / --endpoint model takes (default: read from the ONNX "
        "graph; NCHW for endpoints)",
    )  # fmt: skip


@dataclasses.dataclass
class Source:
    """What a command analyses: ``model`` (a module from --model, else a classifier),
    the data, and facts for reports."""

    model: Any
    spec: Any
    bundle: Any
    info: dict[str, Any]
    run: Any = None  # the LoadedRun of --model


def load_source(
    args: argparse.Namespace, device: Any = "cpu", *, command: str = "", class_flag: str = ""
) -> Source:
    """The model of ``--model`` / ``--onnx`` / ``--endpoint`` with its data."""
    given = [f for f in ("model", "onnx", "tflite", "endpoint") if getattr(args, f, None)]
    if len(given) > 1:
        raise ConfigError(
            "give one model: " + " or ".join(f"--{f}" for f in given) + ", not several"
        )
    if not given or given == ["model"]:
        if not given:
            raise ConfigError(
                "nothing to analyse: give --model RUN_DIR (from `xrobust train`), "
                "--onnx FILE.onnx, --tflite FILE.tflite or --endpoint URL"
            )
        for flag in ("output", "layout", "query_budget", "endpoint_protocol", "endpoint_timeout",
                     "endpoint_batch_size", "endpoint_concurrency", "output_name", *_SAGEMAKER):  # fmt: skip
            if getattr(args, flag, None) is not None:
                raise ConfigError(f"--{flag.replace('_', '-')} applies to --onnx / --endpoint")
        for flag in ("train_data", "raw_features"):
            if getattr(args, flag, None):
                raise ConfigError(f"--{flag.replace('_', '-')} applies to --onnx")
        if getattr(args, "white_box", False):
            raise ConfigError("--white-box applies to --onnx (a run directory is white-box)")
        if getattr(args, "header", None):
            raise ConfigError("--header applies to --endpoint")
        if getattr(args, "tflite_signature", None):
            raise ConfigError("--tflite-signature applies to --tflite")
        loaded, bundle = load_model_and_data(args, device, command=command, class_flag=class_flag)
        info = {
            "name": loaded.metadata.get("architecture") or type(loaded.model).__name__,
            "source": str(loaded.path) if loaded.path else None,
        }
        return Source(loaded.model, loaded.spec, bundle, info, loaded)
    return _black_box_source(args, given[0])


def _black_box_source(args: argparse.Namespace, kind: str) -> Source:
    from xrobust.models import as_classifier

    where = getattr(args, kind)
    if not args.data:
        raise ConfigError(
            f"--{kind} needs --data: the model does not say which data it takes "
            "(give a built-in name such as digits, or your file)"
        )
    if getattr(args, "allow_incomplete", False):
        raise ConfigError("--allow-incomplete applies to --model")
    if kind != "endpoint" and getattr(args, "header", None):
        raise ConfigError("--header applies to --endpoint")
    bundle, opts = _file_data(args, kind, where)
    if args.output:
        opts["output"] = args.output
    if args.layout:
        opts["layout"] = args.layout
    if getattr(args, "output_name", None):
        opts["output_name"] = args.output_name
    if getattr(args, "tflite_signature", None):
        if kind != "tflite":
            raise ConfigError("--tflite-signature applies to --tflite")
        opts["signature"] = args.tflite_signature
    opts.update(_sagemaker_options(args, where if kind == "endpoint" else ""))
    if kind == "endpoint" and args.header:
        opts["headers_env"] = _headers(args.header)
    for flag, key in (
        ("endpoint_protocol", "protocol"), ("endpoint_timeout", "timeout"),
        ("endpoint_batch_size", "batch_size"), ("endpoint_concurrency", "concurrency"),
    ):  # fmt: skip
        if getattr(args, flag, None) is not None:
            if kind != "endpoint":
                raise ConfigError(f"--{flag.replace('_', '-')} applies to --endpoint")
            opts[key] = getattr(args, flag)
    if getattr(args, "white_box", False) and kind != "onnx":
        raise ConfigError(
            "--white-box applies to --onnx: "
            + ("a TensorFlow Lite model is a black box (audit it beside its source: --source "
               "FILE.onnx)" if kind == "tflite" else "an endpoint has no gradients")
        )  # fmt: skip
    clf = as_classifier(where, bundle.spec, query_budget=args.query_budget, **opts)
    clf.check_data(
        tuple(bundle.spec.input_shape), bundle.spec.num_classes, f"data {args.data!r}",
        spec=bundle.spec,
    )  # fmt: skip
    info = {"name": clf.name, "source": kind}
    if getattr(args, "white_box", False):
        from xrobust.data import as_tensors

        x_check, _ = as_tensors(bundle.test, limit=256)  # checked on this data, every run
        clf = clf.to_torch(x_check, query_budget=args.query_budget)
        info["source"] = "onnx (white-box through onnx2torch)"
    return Source(clf, bundle.spec, bundle, info)


#: the options of a sagemaker:// --endpoint (flag attribute -> SageMakerClassifier option).
_SAGEMAKER = {"aws_region": "region", "aws_profile": "profile", "endpoint_url": "endpoint_url",
              "content_type": "content_type"}  # fmt: skip


def _sagemaker_options(args: argparse.Namespace, where: str) -> dict[str, Any]:
    """The SageMaker options given, refused unless ``where`` is a sagemaker:// endpoint."""
    given = {key: getattr(args, f) for f, key in _SAGEMAKER.items() if getattr(args, f, None)}
    if not str(where).startswith("sagemaker://"):
        for flag in [f for f in _SAGEMAKER if getattr(args, f, None)][:1]:
            raise ConfigError(f"--{flag.replace('_', '-')} applies to --endpoint sagemaker://NAME")
        return {}
    if getattr(args, "header", None):
        raise ConfigError(
            "--header does not apply to a sagemaker:// endpoint: its requests are signed with "
            "the AWS credential chain (AWS_PROFILE / --aws-profile, AWS_ACCESS_KEY_ID ...)"
        )
    return given


def _file_data(args: argparse.Namespace, kind: str, where: str) -> tuple[Any, dict[str, Any]]:
    """The data of a black box and options for its classifier: read for an ``--onnx`` /
    ``--tflite`` file without ever standardising a table with its own statistics (issue 18);
    as it is for an endpoint."""
    from xrobust.data import load_dataset

    how = {
        "target": getattr(args, "target", None),
        "resize": bool(getattr(args, "resize", False)),
        "train_data": getattr(args, "train_data", None),
        "raw_features": bool(getattr(args, "raw_features", False)),
    }
    if kind == "onnx":
        from xrobust.models.onnx import load_for_onnx

        return load_for_onnx(where, args.data, **how)  # type: ignore[no-any-return]
    if kind == "tflite":
        from xrobust.models.tflite import load_for_tflite

        sig = getattr(args, "tflite_signature", None)
        return load_for_tflite(where, args.data, signature=sig, **how), {}
    for flag in ("train_data", "raw_features", "resize"):
        if getattr(args, flag, None):
            also = " and --model" if flag == "resize" else ""
            raise ConfigError(f"--{flag.replace('_', '-')} applies to --onnx / --tflite{also}")
    return load_dataset(args.data, target=how["target"]), {}


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _headers(pairs: list[str]) -> dict[str, str]:
    """``--header NAME=ENV_VAR`` items as ``headers_env``. Only the NAME of an environment
    variable is accepted after ``=``; nothing given after it is ever echoed (it may be a
    pasted secret), and neither is a NAME that is not a valid header name."""
    out: dict[str, str] = {}
    for i, item in enumerate(pairs, 1):
        name, sep, env = str(item).partition("=")
        name, env = name.strip(), env.strip()
        example = (name if _HEADER_NAME.fullmatch(name) else "X-Api-Key") or "X-Api-Key"
        how = (
            f"after '=' give the NAME of an environment variable that holds the secret, e.g. "
            f"--header {example}=XR_API_KEY after export XR_API_KEY=... (values are read from "
            "the environment, never from the command line)"
        )
        if not sep or not _HEADER_NAME.fullmatch(name):
            raise ConfigError(
                f"--header (item {i}) is not NAME=ENV_VAR with an HTTP header name before '=' "
                f"(it is not shown: it may hold a secret); {how}"
            )
        if not _ENV_NAME.fullmatch(env):
            raise ConfigError(
                f"--header {name}: the value is not shown, and is not an environment variable "
                f"name (letters, digits and _, not starting with a digit); {how}"
            )
        out[name] = env
    return out


def old_target_hint(value: str | None, command: str, new_flag: str, data: str | None) -> None:
    """``--target 3`` used to pick a class: say where that moved, when the data is no CSV."""
    if value is None:
        return
    v = value.strip().lower()
    looks_like_class = v.lstrip("-").isdigit() or (command == "explain" and v in ("pred", "label"))
    is_csv = data is not None and Path(str(data)).suffix.lower() in (".csv", ".tsv")
    if looks_like_class and not is_csv:
        raise ConfigError(
            f"--target now names the label column of a CSV file (as on `xrobust train`); "
            f"to choose the class, use {new_flag} {value}"
        )


def load_model_and_data(
    args: argparse.Namespace, device: Any = "cpu", *, command: str = "", class_flag: str = ""
) -> tuple[Any, Any]:
    """``(LoadedRun, DatasetBundle)`` for ``--model`` / ``--data`` / ``--target``."""
    from xrobust.data.schema import default_source, load_for_model
    from xrobust.models import load_run

    loaded = load_run(
        args.model, device=device, allow_incomplete=bool(getattr(args, "allow_incomplete", False))
    )
    if class_flag:
        try:
            src: str | None = args.data or default_source(loaded.spec)
        except ConfigError:
            src = args.data
        old_target_hint(args.target, command, class_flag, src)
    bundle = load_for_model(
        loaded.spec, args.data, target=args.target, resize=bool(getattr(args, "resize", False))
    )
    return loaded, bundle
