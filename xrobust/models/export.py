"""Export a torch model (or a run directory) to ONNX, verified before it is reported done.

:func:`export_onnx` writes the file atomically (a temporary file in the same folder, then a
rename): a failed or refused export leaves no file behind, and an existing file at ``path``
is replaced only by a verified one. Verification runs the written file through onnxruntime
on real inputs (the model's test data for a run directory, or ``check_x``; random inputs in
the bounds only when neither is available) at two batch sizes when the batch is dynamic, and
compares with torch's outputs; above ``tol`` it refuses and deletes the file.

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

__all__ = ["FORMATS", "ExportResult", "export_onnx"]

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("onnx",)
#: torch's exporter writes opset 18 natively; onnx2torch 1.5 converts it (not all of 19+).
DEFAULT_OPSET = 18


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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


class _ExportWrapper(nn.Module):
    """Fixes the forward argument's name ("input") for the exporter's dynamic shapes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        out = self.model(input)
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


def _check_inputs(
    spec: Any,
    input_shape: tuple[int, ...],
    check_x: Any,
    rows: int,
    seed: int,
) -> tuple[torch.Tensor, str]:
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
    if spec is not None:
        try:
            from xrobust.data import as_tensors
            from xrobust.data.schema import load_for_model

            bundle = load_for_model(spec)
            x, _ = as_tensors(bundle.test, limit=rows)
            if tuple(x.shape[1:]) == tuple(input_shape) and len(x):
                return x.float(), "test data"
        except Exception as exc:  # the data may have moved: random inputs still check
            log.info("export check: the model's data is not available (%s)", exc)
    lo, hi = (0.0, 1.0)
    bounds = getattr(spec, "bounds", None) if spec is not None else None
    if bounds is not None:
        lo, hi = float(bounds[0]), float(bounds[1])
    g = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand(rows, *input_shape, generator=g)
    return x, "random in bounds"


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
    kwargs["opset_version"] = DEFAULT_OPSET if opset is None else int(opset)
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
        batch_size: the fixed batch size when ``dynamic_batch`` is False (default 1).
        opset: the ONNX opset (default 18, :data:`DEFAULT_OPSET`: onnxruntime runs it, and
            onnx2torch 1.5 converts it back for white-box use).
        check_x: inputs to verify on (default: the run's test data, ``rows`` of them).
        rows: how many test rows to verify on.
        tol: largest allowed |onnxruntime - torch| output difference.
        allow_incomplete: export the checkpoint of a training run that did not finish.
        seed: for random check inputs (used only when no data is available).

    Returns:
        An :class:`ExportResult`.

    Raises:
        ConfigError: onnx/onnxscript/onnxruntime missing; a bad shape or option.
        ModelError: the export failed, or onnxruntime's outputs differ from torch's by more
            than ``tol`` (no file is left).
        CheckpointError: the run directory cannot be loaded.
    """
    if not dynamic_batch and batch_size is None:
        batch_size = 1
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if dynamic_batch and batch_size is not None:
        raise ConfigError("batch_size fixes the batch: give it with dynamic_batch=False")
    if not tol > 0:
        raise ConfigError(f"tol must be > 0, got {tol!r}")
    out = Path(path)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"the output file must end in .onnx, got {str(out)!r}")
    if out.is_dir():
        raise ConfigError(f"{str(out)!r} is a folder; expected a file name")
    module, spec = _resolve(model_or_run, allow_incomplete)
    if input_shape is None:
        input_shape = None if spec is None else tuple(spec.input_shape)
    if input_shape is None:
        raise ConfigError("input_shape is needed to export a plain module (e.g. (1, 28, 28))")
    input_shape = tuple(int(s) for s in input_shape)
    x, how = _check_inputs(spec, input_shape, check_x, rows, seed)

    net = _ExportWrapper(copy.deepcopy(module).cpu().eval())
    for p in net.parameters():
        p.requires_grad_(False)
    example_rows = 2 if dynamic_batch else int(batch_size)  # type: ignore[arg-type]
    example = x[:example_rows]
    if len(example) < example_rows:
        example = torch.cat([example] * (example_rows // len(example) + 1))[:example_rows]

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        _export(net, example, tmp, opset, dynamic_batch)
        diff, found_opset, names = _verify(net, tmp, x, dynamic_batch, batch_size)
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
    )


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
