"""Export a torch model (or a run directory) to ONNX, verified before it is reported done.

:func:`export_onnx` writes the file atomically (a temporary file in the same folder, then a
rename): a failed or refused export leaves no file behind, and an existing file at ``path``
is replaced only by a verified one. Verification runs the written file through onnxruntime
on real inputs (the model's test data for a run directory, or ``check_x``; random inputs in
the bounds only when neither is available) at two batch sizes when the batch is dynamic, and
compares with torch's outputs; above ``tol`` it refuses and deletes the file.

What a run applies to its inputs outside the network travels *inside* the graph: a model
trained on a table (a CSV, ``breast_cancer``) reads features standardised with its training
split's mean and std, so the export puts that standardisation in front of the network and
the file takes raw feature rows, exactly the values of the CSV. (Image normalisation is part
of the network already.) The file records, as JSON under the ``xrobust`` key of its
``metadata_props`` (see :data:`METADATA_KEY`, :data:`METADATA_VERSION`), the feature names,
the classes, the input bounds, the preprocessing and whether it is embedded, and the run's
dataset spec, so that ``--onnx FILE --data file.csv`` reads the file as ``--model`` does.

``opset`` is checked before any work against what torch's exporter writes natively
(:func:`supported_opsets`, 18 to 23 with torch 2.13), and the written file's opset is
checked to be the one asked for. A fixed ``batch_size`` whose example batch would not fit
in memory is refused before anything is allocated.

The CLI: ``xrobust export --model runs/digits --format onnx --out model.onnx``.

Example:
    >>> from xrobust.models.export import export_onnx
    >>> res = export_onnx("runs/digits", "model.onnx")        # doctest: +SKIP
    >>> res.max_abs_diff < 1e-4, res.dynamic_batch            # doctest: +SKIP
    (True, True)
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xrobust.errors import ConfigError, ModelError

__all__ = [
    "FORMATS",
    "MAX_FIXED_BATCH",
    "METADATA_KEY",
    "METADATA_VERSION",
    "ExportResult",
    "export_onnx",
    "supported_opsets",
]

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("onnx",)
#: torch's exporter writes opset 18 natively; onnx2torch 1.5 converts it (not all of 19+).
DEFAULT_OPSET = 18
#: The ``metadata_props`` key of the JSON record xrobust writes into its exports.
METADATA_KEY = "xrobust"
#: Version of that record; readers refuse a newer one (see :mod:`xrobust.models.onnx`).
METADATA_VERSION = 1
#: The largest fixed batch ``export_onnx`` writes (a dynamic batch takes any size).
MAX_FIXED_BATCH = 65536
#: Memory the export's example batch (inputs and activations) may take: 1 GiB.
MAX_EXAMPLE_BYTES = 1 << 30


def supported_opsets() -> tuple[int, int]:
    """The ONNX opsets torch's exporter writes natively: ``(18, 23)`` with torch 2.13.

    Torch's exporter (``dynamo=True``) implements its operators at opset 18 and up to
    ``torch.onnx``'s ``ONNX_MAX_OPSET``; an older opset is reached only by a version
    converter run afterwards, which fails for most models (and then silently leaves 18),
    so :func:`export_onnx` refuses those before any work.
    """
    lo, hi = DEFAULT_OPSET, 23
    try:  # private constants: fall back to the values of torch 2.13
        from torch.onnx import _constants as onnx_constants
        from torch.onnx._internal.exporter import _constants as exporter_constants

        lo = int(getattr(exporter_constants, "TORCHLIB_OPSET", lo))
        hi = int(getattr(onnx_constants, "ONNX_MAX_OPSET", hi))
    except Exception:  # pragma: no cover - another torch layout
        pass
    return lo, max(lo, hi)


def _check_opset(opset: Any) -> int:
    lo, hi = supported_opsets()
    if opset is None:
        return DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, int | np.integer):
        raise ConfigError(f"opset must be an integer from {lo} to {hi}, got {opset!r}")
    v = int(opset)
    if not lo <= v <= hi:
        older = (
            f"; for an older runtime, convert the exported file afterwards "
            f"(onnx.version_converter.convert_version) and check it, since torch's exporter "
            f"cannot write opset {v} itself"
            if v < lo
            else ""
        )
        raise ConfigError(
            f"opset {v} is not supported: torch {torch.__version__.split('+')[0]}'s ONNX "
            f"exporter writes opsets {lo} to {hi} (default {DEFAULT_OPSET}){older}"
        )
    return v


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote and how it was checked.

    Attributes:
        path: the written file.
        input_shape: one input's shape (without the batch dimension), NCHW for images.
        dynamic_batch: whether the batch dimension is dynamic (else ``batch_size``).
        batch_size: the fixed batch size, or None.
        opset: the file's ONNX opset.
        input_name / output_name: the graph's input and output names.
        max_abs_diff: largest |onnxruntime - torch| output difference on the check inputs.
        rows_checked: how many inputs were compared.
        check_inputs: "test data", "given" or "random in bounds".
        tol: the tolerance applied.
        preprocessing_embedded: whether the run's input preprocessing (a tabular model's
            standardisation) is inside the graph, so the file takes raw rows.
        metadata: the JSON record written under ``metadata_props["xrobust"]``.
    """

    path: str
    input_shape: tuple[int, ...]
    dynamic_batch: bool
    batch_size: int | None
    opset: int | None
    input_name: str
    output_name: str
    max_abs_diff: float
    rows_checked: int
    check_inputs: str
    tol: float
    preprocessing_embedded: bool = False
    metadata: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


class _ExportWrapper(nn.Module):
    """Fixes the forward argument's name ("input") for the exporter's dynamic shapes, and
    puts the run's preprocessing (a :class:`Normalize`, or nothing) in front of the model."""

    def __init__(self, model: nn.Module, pre: nn.Module | None = None) -> None:
        super().__init__()
        self.pre = pre if pre is not None else nn.Identity()
        self.model = model

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        out = self.model(self.pre(input))
        if not isinstance(out, torch.Tensor):
            raise ModelError(
                f"the model returns {type(out).__name__}; export needs a tensor of scores"
            )
        return out


def _resolve(model_or_run: Any, allow_incomplete: bool) -> tuple[nn.Module, Any]:
    """(module, spec or None)."""
    from xrobust.models.checkpoint import LoadedRun, load_run

    if isinstance(model_or_run, LoadedRun):
        return model_or_run.model, model_or_run.spec
    if isinstance(model_or_run, str | os.PathLike):
        run = load_run(model_or_run, device="cpu", allow_incomplete=allow_incomplete)
        return run.model, run.spec
    if isinstance(model_or_run, nn.Module):
        from xrobust.data.schema import spec_of

        return model_or_run, spec_of(model_or_run)
    module = getattr(model_or_run, "module", None)  # a TorchClassifier
    if isinstance(module, nn.Module):
        return module, None
    raise ModelError(
        f"cannot export a {type(model_or_run).__name__}: expected a torch.nn.Module, a run "
        "directory or a loaded run"
    )


def _standardization(spec: Any) -> tuple[list[float], list[float]] | None:
    """The (mean, std) a tabular run standardises its raw features with, outside the
    network (``spec.extra``: ``standardized``, ``raw_mean``, ``raw_std``), or None."""
    if spec is None or spec.modality != "tabular" or not spec.extra.get("standardized"):
        return None
    from xrobust.data.spec import valid_standardisation

    mean, std = spec.extra.get("raw_mean"), spec.extra.get("raw_std")
    nf = int(np.prod(spec.input_shape))
    if not valid_standardisation(spec.extra, nf):
        raise ModelError(
            "the run records a standardisation of its features (raw_mean / raw_std) that does "
            f"not fit its {nf} features, so it cannot be put into the exported graph"
        )
    return [float(v) for v in mean], [float(v) for v in std]


def _check_inputs(
    spec: Any,
    input_shape: tuple[int, ...],
    check_x: Any,
    rows: int,
    seed: int,
    stats: tuple[list[float], list[float]] | None = None,
) -> tuple[torch.Tensor, str]:
    """Inputs in the *graph's* units (raw rows when ``stats`` are embedded)."""
    if check_x is not None:
        x = torch.as_tensor(np.asarray(check_x, dtype=np.float32)) if not isinstance(
            check_x, torch.Tensor
        ) else check_x.detach().cpu().float()  # fmt: skip
        if tuple(x.shape[1:]) != tuple(input_shape) or x.shape[0] < 1:
            raise ConfigError(
                f"check_x has shape {tuple(x.shape)}; expected (N, "
                f"{', '.join(map(str, input_shape))}) with N >= 1"
            )
        return x, "given"
    mean = std = None
    if stats is not None:
        mean = torch.tensor(stats[0], dtype=torch.float64)
        std = torch.tensor(stats[1], dtype=torch.float64)
    if spec is not None:
        try:
            from xrobust.data import as_tensors
            from xrobust.data.schema import load_for_model

            bundle = load_for_model(spec)
            x, _ = as_tensors(bundle.test, limit=rows)
            if tuple(x.shape[1:]) == tuple(input_shape) and len(x):
                if mean is not None and std is not None:  # back to the file's raw values
                    x = (x.double() * std + mean).float()
                return x.float(), "test data"
        except Exception as exc:  # the data may have moved: random inputs still check
            log.info("export check: the model's data is not available (%s)", exc)
    lo, hi = (0.0, 1.0)
    bounds = getattr(spec, "bounds", None) if spec is not None else None
    if bounds is not None:
        lo, hi = float(bounds[0]), float(bounds[1])
    g = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand(rows, *input_shape, generator=g)
    if mean is not None and std is not None:
        x = (x.double() * std + mean).float()
    return x, "random in bounds"


def _row_bytes(net: nn.Module, example: torch.Tensor) -> int:
    """Bytes one row takes in a forward pass: its input and every module's output."""
    total = [example[:1].numel() * 4]

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        for t in out if isinstance(out, list | tuple) else (out,):
            if isinstance(t, torch.Tensor):
                total[0] += t.numel() * t.element_size()

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    try:
        with torch.no_grad():
            net(example[:1])
    finally:
        for h in handles:
            h.remove()
    return max(int(total[0]), 4)


def _check_fixed_batch(batch_size: int, row_bytes: int) -> None:
    need = int(batch_size) * row_bytes
    if need <= MAX_EXAMPLE_BYTES:
        return
    most = max(1, MAX_EXAMPLE_BYTES // row_bytes)
    raise ConfigError(
        f"a fixed batch of {batch_size} rows (--batch-size, Python: batch_size=) would make the "
        f"export run the model on {batch_size} rows at once, about {need / 2**30:.3g} GiB of "
        f"inputs and activations for this model, more than the {MAX_EXAMPLE_BYTES / 2**30:g} "
        f"GiB the export allows: fix a batch of at most {most} rows, or leave the batch size "
        "out for a dynamic batch (the file then takes batches of any size)"
    )


def _metadata(
    spec: Any,
    input_shape: tuple[int, ...],
    stats: tuple[list[float], list[float]] | None,
    dynamic: bool,
    batch_size: int | None,
    opset: int,
) -> dict[str, Any]:
    """The JSON record stored under ``metadata_props[METADATA_KEY]``."""
    from xrobust import __version__

    rec: dict[str, Any] = {
        "format": "xrobust-onnx",
        "version": METADATA_VERSION,
        "xrobust_version": __version__,
        "opset": int(opset),
        "input": {
            "name": "input",
            "shape": [None if dynamic else int(batch_size or 1), *map(int, input_shape)],
            "layout": "NCHW" if len(input_shape) == 3 else None,
            "units": "raw" if stats is not None else "model",
        },
        "output": {"name": "logits", "kind": "logits"},
    }
    if spec is None:  # a plain module: what its inputs mean is not known
        rec["preprocessing"] = None
        return rec
    steps: list[dict[str, Any]] = []
    if stats is not None:
        steps.append(
            {"op": "standardize", "mean": stats[0], "std": stats[1], "in_graph": True,
             "fitted_on": "the training split"}
        )  # fmt: skip
    if spec.mean is not None and spec.std is not None:
        steps.append(
            {"op": "normalize", "mean": list(spec.mean), "std": list(spec.std), "in_graph": True,
             "part_of": "the network"}
        )  # fmt: skip
    rec.update(
        {
            "modality": spec.modality,
            "feature_names": list(spec.feature_names) if spec.feature_names else None,
            "class_names": list(spec.class_names),
            "num_classes": int(spec.num_classes),
            # bounds in the units the run's attacks use (standardised features for a table)
            "bounds": [float(spec.bounds[0]), float(spec.bounds[1])],
            "preprocessing": {"embedded": True, "steps": steps},
            "spec": spec.to_dict(),
        }
    )
    if stats is not None:  # the same bounds in the file's raw units, per feature
        lo, hi = float(spec.bounds[0]), float(spec.bounds[1])
        rec["input_bounds"] = [[m + lo * d, m + hi * d] for m, d in zip(*stats)]
    else:
        rec["input_bounds"] = [float(spec.bounds[0]), float(spec.bounds[1])]
    return rec


def _write_metadata(path: str, record: dict[str, Any]) -> None:
    import json

    import onnx

    m = onnx.load(path)
    for p in list(m.metadata_props):
        if p.key == METADATA_KEY:
            m.metadata_props.remove(p)
    entry = m.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(record, sort_keys=True, allow_nan=False)
    onnx.save(m, path)


def _export(
    module: nn.Module,
    example: torch.Tensor,
    path: str,
    opset: int | None,
    dynamic_batch: bool,
) -> None:
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError as exc:
        raise ConfigError(
            "ONNX export needs onnx and onnxscript: pip install 'xrobust[onnx]'"
        ) from exc
    kwargs: dict[str, Any] = {
        "input_names": ["input"],
        "output_names": ["logits"],
        "dynamo": True,
        "external_data": False,
        "verbose": False,
        "report": False,
    }
    kwargs["opset_version"] = _check_opset(opset)
    if dynamic_batch:
        kwargs["dynamic_shapes"] = {"input": {0: torch.export.Dim("batch")}}
    quiet = logging.getLogger("torch.onnx")  # "torchvision is not installed. Skipping ..."
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    with warnings.catch_warnings(), open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        warnings.simplefilter("ignore")
        try:
            prog = torch.onnx.export(module, (example,), **kwargs)
            if prog is None:
                raise ModelError("torch.onnx.export returned nothing")
            prog.save(path, external_data=False)
        except (ModelError, ConfigError):
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelError(
                f"torch could not export the model to ONNX: {type(exc).__name__}: {first}"
            ) from exc
        finally:
            quiet.setLevel(level)


def export_onnx(
    model_or_run: Any,
    path: str | os.PathLike[str],
    input_shape: tuple[int, ...] | None = None,
    *,
    dynamic_batch: bool = True,
    batch_size: int | None = None,
    opset: int | None = None,
    check_x: Any = None,
    rows: int = 64,
    tol: float = 1e-4,
    allow_incomplete: bool = False,
    seed: int = 0,
) -> ExportResult:
    """Export a torch model to an ONNX file and verify it with onnxruntime.

    Args:
        model_or_run: an ``nn.Module``, a run directory (``xrobust train``'s output) or a
            :class:`~xrobust.models.checkpoint.LoadedRun`. The model is copied; the caller's
            module is not changed.
        path: the ``.onnx`` file to write (replaced only by a verified export).
        input_shape: one input's shape, channels first for images (default: the run's spec).
        dynamic_batch: a variable batch dimension (default); False fixes it to
            ``batch_size``.
        batch_size: the fixed batch size when ``dynamic_batch`` is False (default 1; at
            most :data:`MAX_FIXED_BATCH`, and refused when one batch of inputs and
            activations would take more than 1 GiB).
        opset: the ONNX opset (default 18, :data:`DEFAULT_OPSET`: onnxruntime runs it, and
            onnx2torch 1.5 converts it back for white-box use); one of
            :func:`supported_opsets`, else refused before any work.
        check_x: inputs to verify on, in the file's units (raw feature rows for a tabular
            run, whose standardisation the file embeds); default: the run's test data,
            ``rows`` of them.
        rows: how many test rows to verify on.
        tol: largest allowed |onnxruntime - torch| output difference.
        allow_incomplete: export the checkpoint of a training run that did not finish.
        seed: for random check inputs (used only when no data is available).

    Returns:
        An :class:`ExportResult` (its ``metadata`` is the record written into the file).

    Raises:
        ConfigError: onnx/onnxscript/onnxruntime missing; a bad shape or option (an opset
            outside :func:`supported_opsets`, a fixed batch too large), before any work.
        ModelError: the export failed, or onnxruntime's outputs differ from torch's by more
            than ``tol`` (no file is left).
        CheckpointError: the run directory cannot be loaded.
    """
    batch_size = _check_batch_args(dynamic_batch, batch_size, tol)
    want_opset = _check_opset(opset)
    out = _check_output(path)
    module, spec = _resolve(model_or_run, allow_incomplete)
    input_shape, spec = _input_shape(input_shape, spec)
    stats = _standardization(spec)
    net = _export_net(module, stats)
    if not dynamic_batch:  # before any batch of that size is made
        _check_fixed_batch_of(net, input_shape, int(batch_size))  # type: ignore[arg-type]
    x, how = _check_inputs(spec, input_shape, check_x, rows, seed, stats)
    record = _metadata(spec, input_shape, stats, dynamic_batch, batch_size, want_opset)
    diff, found_opset, names = _write_verified(
        net, out, x, how, record, want_opset, dynamic_batch, batch_size, tol
    )
    return ExportResult(
        path=str(out),
        input_shape=input_shape,
        dynamic_batch=dynamic_batch,
        batch_size=None if dynamic_batch else int(batch_size),  # type: ignore[arg-type]
        opset=found_opset,
        input_name=names[0],
        output_name=names[1],
        max_abs_diff=diff,
        rows_checked=len(x),
        check_inputs=how,
        tol=float(tol),
        preprocessing_embedded=stats is not None,
        metadata=record,
    )


def _check_batch_args(dynamic_batch: bool, batch_size: Any, tol: Any) -> int | None:
    """The batch size (1 by default for a fixed batch), checked with ``tol``."""
    if not dynamic_batch and batch_size is None:
        batch_size = 1
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer)
        or int(batch_size) < 1
    ):  # fmt: skip
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if batch_size is not None and int(batch_size) > MAX_FIXED_BATCH:
        raise ConfigError(
            f"a fixed batch of {batch_size} rows (--batch-size, Python: batch_size=) is more than "
            f"the {MAX_FIXED_BATCH} the export writes: leave the batch size out for a dynamic "
            "batch (the file then takes batches of any size), or fix a smaller one"
        )
    if dynamic_batch and batch_size is not None:
        raise ConfigError("batch_size fixes the batch: give it with dynamic_batch=False")
    if not tol > 0:
        raise ConfigError(f"tol must be > 0, got {tol!r}")
    return batch_size


def _check_output(path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"the output file must end in .onnx, got {str(out)!r}")
    if out.is_dir():
        raise ConfigError(f"{str(out)!r} is a folder; expected a file name")
    return out


def _input_shape(input_shape: tuple[int, ...] | None, spec: Any) -> tuple[tuple[int, ...], Any]:
    """The input shape (default: the run's) and the spec, None when the shape is another
    than the run's (its schema then does not describe the file)."""
    if input_shape is None:
        input_shape = None if spec is None else tuple(spec.input_shape)
    if input_shape is None:
        raise ConfigError("input_shape is needed to export a plain module (e.g. (1, 28, 28))")
    input_shape = tuple(int(s) for s in input_shape)
    if spec is not None and tuple(spec.input_shape) != input_shape:
        spec = None
    return input_shape, spec


def _export_net(module: nn.Module, stats: tuple[list[float], list[float]] | None) -> nn.Module:
    """A frozen eval-mode CPU copy of the module, behind the run's standardisation if any."""
    pre = None
    if stats is not None:
        from xrobust.models.normalize import Normalize

        pre = Normalize(stats[0], stats[1], input_ndim=1)
    net = _ExportWrapper(copy.deepcopy(module).cpu().eval(), pre)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _check_fixed_batch_of(net: nn.Module, input_shape: tuple[int, ...], batch_size: int) -> None:
    probe = torch.zeros(1, *input_shape)
    try:
        row = _row_bytes(net, probe)
    except Exception:  # the export itself will say what is wrong with the model
        row = 4 * int(np.prod(input_shape))
    _check_fixed_batch(batch_size, row)


def _write_verified(
    net: nn.Module,
    out: Path,
    x: torch.Tensor,
    how: str,
    record: dict[str, Any],
    want_opset: int,
    dynamic_batch: bool,
    batch_size: int | None,
    tol: float,
) -> tuple[float, int | None, tuple[str, str]]:
    """Export to a temporary file beside ``out``, verify it with onnxruntime on ``x``, and
    move it into place only if it passes (nothing is left otherwise)."""
    example_rows = 2 if dynamic_batch else int(batch_size)  # type: ignore[arg-type]
    example = x[:example_rows]
    if len(example) < example_rows:
        example = torch.cat([example] * (example_rows // len(example) + 1))[:example_rows]
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        _export(net, example, tmp, want_opset, dynamic_batch)
        _write_metadata(tmp, record)
        diff, found_opset, names = _verify(net, tmp, x, dynamic_batch, batch_size)
        if found_opset != want_opset:
            raise ModelError(
                f"torch's exporter wrote opset {found_opset} where opset {want_opset} was asked "
                "for: not written"
            )
        if not diff <= tol:
            raise ModelError(
                f"the exported model differs from torch by {diff:.3g} (max abs output "
                f"difference on {len(x)} rows of {how}), above tol={tol:g}: not written"
            )
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return diff, found_opset, names


def _verify(
    net: nn.Module, path: str, x: torch.Tensor, dynamic: bool, batch_size: int | None
) -> tuple[float, int | None, tuple[str, str]]:
    """Max |onnxruntime - torch| on ``x`` (in chunks that exercise the batch dimension)."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as exc:
        raise ConfigError(
            "verifying an ONNX export needs onnx and onnxruntime: pip install 'xrobust[onnx]'"
        ) from exc
    m = onnx.load(path)
    onnx.checker.check_model(m)
    opset = next((int(o.version) for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        so.intra_op_num_threads = int(threads)
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    iname, oname = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    if dynamic:  # one row, then the rest in one batch: both sizes must work
        chunks = [x[:1], x[1:]] if len(x) > 1 else [x]
    else:
        b = int(batch_size)  # type: ignore[arg-type]
        chunks = []
        for i in range(0, len(x), b):
            c = x[i : i + b]
            if len(c) < b:
                c = torch.cat([c, c[:1].expand(b - len(c), *c.shape[1:])])
            chunks.append(c)
    diff = 0.0
    with torch.no_grad():
        for c in chunks:
            ref = net(c).double().numpy()
            try:
                got = sess.run([oname], {iname: c.numpy().astype(np.float32)})[0]
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise ModelError(
                    f"onnxruntime cannot run the exported model on a batch of {len(c)}: {first}"
                ) from exc
            if got.shape != ref.shape:
                raise ModelError(
                    f"the exported model answers shape {got.shape} where torch answers {ref.shape}"
                )
            diff = max(diff, float(np.abs(got.astype(np.float64) - ref).max()))
    return diff, opset, (iname, oname)
