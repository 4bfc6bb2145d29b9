"""The :class:`Trainer`: a small, fast, resumable and DDP-aware classification training loop.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from xrobust.trainer import Trainer, TrainConfig
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(256, 2, generator=g); y = (x[:, 0] > 0).long()
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> hist = Trainer(model, TrainConfig(epochs=10, lr=0.02, device="cpu")).fit(
    ...     TensorDataset(x, y), progress=False)
    >>> hist.records[-1].train_acc > 0.9
    True
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from xrobust import distributed as _dist
from xrobust._io import atomic_write_text
from xrobust._modelstate import eval_mode, restore_mode_on_error
from xrobust.data.spec import DatasetSpec
from xrobust.device import amp_dtype, autocast, model_device
from xrobust.errors import CheckpointError, ConfigError, DataError, TrainingError
from xrobust.models._build import build_info
from xrobust.models.checkpoint import save_checkpoint, unwrap
from xrobust.seeding import seed_everything
from xrobust.trainer.config import TRAJECTORY_FIELDS, TrainConfig
from xrobust.trainer.lock import run_lock
from xrobust.trainer.state import STATE_DIR, has_state, load_state, save_state

__all__ = ["EpochRecord", "History", "Trainer"]

_log = logging.getLogger(__name__)
METRICS_NAME = "metrics.jsonl"
_ON_DEVICE_LIMIT = 1 << 30  # tensor datasets up to 1 GiB are moved to the GPU once

#: ``progress(stage, done, total)``: the stage is ``"epoch E/EPOCHS"``, done/total count steps
ProgressFn = Callable[[str, int, int], None]


@dataclass
class EpochRecord:
    """Metrics of one epoch (reduced over all processes under torchrun).

    Attributes:
        epoch: 1-based epoch number.
        train_loss: mean training loss (the adversarial objective when adversarial).
        train_acc: accuracy on the clean training batches.
        train_adv_acc: accuracy on the adversarial batches (None without adversarial training).
        val_loss / val_acc: validation metrics after the epoch (None without validation).
        lr: learning rate at the end of the epoch.
        samples: training examples seen (all processes).
        steps: optimizer steps in the epoch.
        time_s: wall time of the epoch in seconds.
    """

    epoch: int
    train_loss: float
    train_acc: float
    train_adv_acc: float | None
    val_loss: float | None
    val_acc: float | None
    lr: float
    samples: int
    steps: int
    time_s: float


@dataclass
class History:
    """What :meth:`Trainer.fit` did, epoch by epoch.

    Attributes:
        records: one :class:`EpochRecord` per completed epoch.
        best_epoch: epoch with the lowest validation loss (None without validation).
        stopped_early: training stopped on ``patience``.
        resumed_from: ``(epoch, step)`` of the state a resumed run started from, else None.
        test_loss / test_acc / test_n: filled by :func:`xrobust.trainer.train` on the test
            split (test_n: its number of examples).
        train_time_s: wall time of the fit in seconds (this process, resumed part only).
    """

    records: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    resumed_from: tuple[int, int] | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    test_n: int | None = None
    train_time_s: float = 0.0

    @property
    def last(self) -> EpochRecord | None:
        """The last epoch's record."""
        return self.records[-1] if self.records else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["resumed_from"] = list(self.resumed_from) if self.resumed_from else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        """Inverse of :meth:`to_dict`."""
        rf = d.get("resumed_from")
        return cls(
            records=[EpochRecord(**r) for r in d.get("records", [])],
            best_epoch=d.get("best_epoch"),
            stopped_early=bool(d.get("stopped_early", False)),
            resumed_from=tuple(rf) if rf else None,  # type: ignore[arg-type]
            test_loss=d.get("test_loss"),
            test_acc=d.get("test_acc"),
            test_n=d.get("test_n"),
            train_time_s=float(d.get("train_time_s", 0.0)),
        )


# ----------------------------------------------------------------------------- data access


def _tensor_pair(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(x, y) tensors behind an in-memory dataset, or None when items must be fetched."""
    if isinstance(ds, Subset):
        inner = _tensor_pair(ds.dataset)
        if inner is None:
            return None
        idx = torch.as_tensor(list(ds.indices), dtype=torch.long)
        return inner[0][idx], inner[1][idx]
    tensors = getattr(ds, "tensors", None)
    if (
        (
            isinstance(ds, TensorDataset)
            or (isinstance(tensors, tuple) and all(isinstance(t, torch.Tensor) for t in tensors))
        )
        and tensors is not None
        and len(tensors) == 2
        and len(tensors[0]) == len(tensors[1])
    ):
        return tensors[0], tensors[1]
    return None


class _Source:
    """Batches of a dataset in a given index order: direct slicing for in-memory tensors,
    a DataLoader (workers, pinned memory on CUDA) otherwise."""

    def __init__(self, ds: Dataset, device: torch.device, num_workers: int) -> None:
        self.ds = ds
        self.device = device
        self.num_workers = num_workers
        self.n = len(ds)  # type: ignore[arg-type]
        pair = _tensor_pair(ds)
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        if pair is not None:
            x, y = pair
            if not torch.is_floating_point(x):
                x = x.float()
            y = y.long()
            if device.type == "cuda":
                nbytes = x.numel() * x.element_size() + y.numel() * y.element_size()
                if nbytes <= _ON_DEVICE_LIMIT:
                    x, y = x.to(device), y.to(device)
                else:
                    x, y = x.pin_memory(), y.pin_memory()
            self.x, self.y = x, y

    def check_labels(self, num_classes: int | None) -> None:
        if self.y is None or num_classes is None or self.n == 0:
            return
        lo, hi = int(self.y.min()), int(self.y.max())
        if lo < 0 or hi >= num_classes:
            raise DataError(
                f"labels must lie in 0..{num_classes - 1} for {num_classes} classes, "
                f"found values {lo}..{hi}"
            )

    def batches(
        self, order: torch.Tensor, batch_size: int, seed: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.x is not None and self.y is not None:
            idx_dev = order.to(self.x.device)
            nb = self.device.type == "cuda"
            for i in range(0, len(order), batch_size):
                idx = idx_dev[i : i + batch_size]
                yield (
                    self.x[idx].to(self.device, non_blocking=nb),
                    self.y[idx].to(self.device, non_blocking=nb),
                )
            return
        cuda = self.device.type == "cuda"
        loader = DataLoader(
            self.ds,
            batch_size=batch_size,
            sampler=order.tolist(),
            num_workers=self.num_workers,
            pin_memory=cuda,
            persistent_workers=False,
            # its own generator: creating the iterator must not consume the global RNG
            generator=torch.Generator().manual_seed(seed),
        )
        for x, y in loader:
            yield x.to(self.device, non_blocking=cuda), y.to(self.device, non_blocking=cuda).long()


# ----------------------------------------------------------------------------- schedules


def _lr_lambda(schedule: str, total_steps: int):  # type: ignore[no-untyped-def]
    total = max(1, total_steps)
    if schedule == "cosine":

        def cosine(step: int) -> float:
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

        return cosine
    if schedule == "onecycle":
        # Same shape as torch's OneCycleLR (cosine annealing, 30% warm-up,
        # initial lr = max/25, final lr = initial/1e4), written as a pure function of the step.
        warm = max(1, round(0.3 * total))
        start, end = 1.0 / 25.0, 1.0 / 25.0 / 1e4

        def onecycle(step: int) -> float:
            if step <= warm:
                t, a, b = step / warm, start, 1.0
            else:
                t, a, b = min(1.0, (step - warm) / max(1, total - warm)), 1.0, end
            return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * t))

        return onecycle

    def constant(step: int) -> float:
        return 1.0

    return constant


# ----------------------------------------------------------------------------- RNG states


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    st: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": {
            "version": py_state[0],
            "internal": list(py_state[1]),
            "gauss": py_state[2],
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = list(torch.cuda.get_rng_state_all())
    return st


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = st["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in st and torch.cuda.is_available():
        states = st["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def determinism_record(device: torch.device, config: TrainConfig) -> dict[str, Any]:
    """What a bitwise-identical resume depends on besides the options and the state.

    CPU kernels split work by thread count (1 and 2 threads give different sums), and
    kernels change between torch versions and devices.
    """
    return {
        "torch": torch.__version__,
        "device": device.type,
        "num_threads": int(torch.get_num_threads()),
        "deterministic": bool(config.deterministic),
    }


def _check_determinism(saved: Any, now: dict[str, Any], run_dir: Path) -> None:
    if not isinstance(saved, dict):
        return
    diffs = [
        f"{k} {saved.get(k)!r} then, {now[k]!r} now"
        for k in now
        if k in saved and saved.get(k) != now[k]
    ]
    if diffs:
        msg = (
            f"resuming {str(run_dir)!r} under different conditions ({'; '.join(diffs)}): the "
            "run continues, but its final weights will not be bitwise identical to an "
            "uninterrupted run (set OMP_NUM_THREADS / torch.set_num_threads as before to keep them)"
        )
        _log.warning(msg)
        warnings.warn(msg, stacklevel=5)


# ----------------------------------------------------------------------------- the trainer


def _is_conv_net(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d | nn.Conv3d) for m in model.modules())


@contextlib.contextmanager
def _deterministic(device: torch.device, on: bool) -> Iterator[None]:
    """Deterministic algorithms for the duration of a fit (restored afterwards)."""
    if not on or device.type != "cuda":
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    prev = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.benchmark = prev[2]
        torch.backends.cudnn.deterministic = prev[3]


@dataclass
class _Run:
    """The state of one :meth:`Trainer.fit`, shared by its steps (see ``Trainer._fit``)."""

    ctx: _dist.DistContext
    run_dir: Path | None
    model: nn.Module  # the bare model: state dicts, evaluation, checkpoints
    train_model: nn.Module  # what the training steps call: the model or its DDP/compiled wrapper
    src: _Source
    val_ds: Dataset | None
    channels_last: bool
    steps_per_epoch: int
    progress: ProgressFn | None
    stats_dev: torch.device
    data_gen: torch.Generator
    epoch_gen_state: torch.Tensor | None = None
    params: list[nn.Parameter] = field(default_factory=list)
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None
    dtype: torch.dtype | None = None
    criterion: Any = None
    bounds: tuple[float, ...] = (0.0, 1.0)
    ddp: nn.Module | None = None
    history: History = field(default_factory=History)
    start_epoch: int = 0
    start_step: int = 0
    partial: torch.Tensor = field(default_factory=lambda: torch.zeros(4, dtype=torch.float64))
    best: dict[str, Any] = field(
        default_factory=lambda: {"loss": math.inf, "epoch": None, "bad": 0, "weights": None}
    )
    done: bool = False


def _accumulate(
    stats: torch.Tensor,
    diverged: torch.Tensor,
    step: int,
    loss: torch.Tensor,
    logits: torch.Tensor | None,
    adv_logits: torch.Tensor | None,
    y: torch.Tensor,
) -> torch.Tensor:
    """Add one step's (loss sum, correct, adversarially correct, count) to ``stats`` in
    place; returns ``diverged`` with the first non-finite step (kept on the device: no
    host sync per step)."""
    with torch.no_grad():
        bad = ~torch.isfinite(loss.detach()).to(stats.device)
        diverged = torch.where(bad & (diverged < 0), step, diverged)
        bs = y.new_tensor(len(y), dtype=torch.float64)
        correct = (logits.argmax(1) == y).sum() if logits is not None else bs.new_zeros(())
        adv_ok = (adv_logits.argmax(1) == y).sum() if adv_logits is not None else bs.new_zeros(())
        stats += torch.stack(
            [loss.detach().double() * bs, correct.double(), adv_ok.double(), bs]
        ).to(stats.device)
    return diverged


class Trainer:
    """Trains a classifier (inputs -> (N, C) logits) with cross-entropy.

    Args:
        model: any ``nn.Module`` returning logits; models from
            :func:`xrobust.models.build_model` also get loadable checkpoints.
        config: the options (defaults: :class:`TrainConfig()`).
        spec: the dataset spec (bounds for adversarial training, classes, checkpoint metadata).
        arch / arch_kwargs: registry name and options of the model, recorded in checkpoints;
            default to what ``build_model`` recorded on the model.

    Example:
        >>> from xrobust.data import load_dataset  # doctest: +SKIP
        >>> from xrobust.models import build_model  # doctest: +SKIP
        >>> ds = load_dataset("digits")  # doctest: +SKIP
        >>> trainer = Trainer(build_model("small_cnn", ds.spec), TrainConfig(), spec=ds.spec)  # doctest: +SKIP
        >>> history = trainer.fit(ds.train, out_dir="runs/digits")  # doctest: +SKIP
        >>> trainer.evaluate(ds.test)["acc"]  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig | None = None,
        spec: DatasetSpec | None = None,
        arch: str | None = None,
        arch_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"Trainer needs a torch nn.Module, got {type(model).__name__}")
        self.model = model
        self.config = config if config is not None else TrainConfig()
        if not isinstance(self.config, TrainConfig):
            raise ConfigError(f"config must be a TrainConfig, got {type(self.config).__name__}")
        self.spec = spec
        info = build_info(model) or {}
        self.arch = arch if arch is not None else info.get("name")
        self.arch_kwargs = dict(arch_kwargs if arch_kwargs is not None else info.get("kwargs", {}))
        self.history = History()
        self._ctx: _dist.DistContext | None = None

    # ------------------------------------------------------------------ public API

    @property
    def is_main_process(self) -> bool:
        """True on rank 0 (or when not distributed): the process that writes files."""
        return self._ctx is None or self._ctx.is_main

    def fit(
        self,
        train_ds: Dataset,
        val_ds: Dataset | None = None,
        out_dir: str | os.PathLike[str] | None = None,
        resume: bool = False,
        progress: ProgressFn | bool | None = None,
    ) -> History:
        """Train ``self.model`` on ``train_ds``; returns the :class:`History`.

        The model ends in eval mode; if training raises (or is interrupted), every
        submodule's mode is put back as it was.

        Args:
            train_ds: a Dataset of ``(x, y)`` pairs (in-memory TensorDatasets are fastest).
            val_ds: validation set; when None and ``config.val_fraction > 0`` a seeded
                share of ``train_ds`` is held out.
            out_dir: run directory: ``metrics.jsonl``, ``model.safetensors``/``model.json``
                and the resumable state (``state/``) are written there (rank 0 only).
            resume: continue from the state in ``out_dir`` (a fresh start when there is none).
            progress: a callback ``progress(stage, done, total)`` called on rank 0 after
                every step (stage ``"epoch E/EPOCHS"``, steps done of the epoch's total);
                the library draws no bars itself (the CLI renders the callback). A bool
                is accepted for compatibility and shows nothing.

        Raises:
            ConfigError: resume without ``out_dir``, or a state saved with other options.
            DataError: an empty dataset or labels outside the model's classes.
        """
        cfg = self.config
        if resume and out_dir is None:
            raise ConfigError("resume=True needs out_dir (the run directory holding the state)")
        ctx = _dist.setup(cfg.device)
        self._ctx = ctx
        report = progress if callable(progress) else None
        lock = (
            run_lock(out_dir) if out_dir is not None and ctx.is_main else contextlib.nullcontext()
        )
        with lock, _deterministic(ctx.device, cfg.deterministic), restore_mode_on_error(self.model):
            return self._fit(ctx, train_ds, val_ds, out_dir, resume, report)

    @torch.no_grad()
    def evaluate(self, ds: Dataset, batch_size: int | None = None) -> dict[str, float]:
        """Mean cross-entropy (without label smoothing) and accuracy of the model on ``ds``.

        Under torchrun every process evaluates its share and the results are summed.

        Returns:
            ``{"loss": ..., "acc": ..., "n": ...}``.
        """
        ctx = self._ctx or _dist.DistContext(0, 1, 0, model_device(self.model))
        model = unwrap(self.model)
        device = model_device(model)
        with eval_mode(model):
            stats = self._evaluate(model, device, ds, batch_size, ctx)
        n = float(stats[2])
        if n == 0:
            raise DataError("cannot evaluate on an empty dataset")
        return {"loss": float(stats[0]) / n, "acc": float(stats[1]) / n, "n": n}

    def _evaluate(
        self,
        model: nn.Module,
        device: torch.device,
        ds: Dataset,
        batch_size: int | None,
        ctx: _dist.DistContext,
    ) -> torch.Tensor:
        """(loss sum, correct, count) over ``ds``, summed over processes."""
        dtype = amp_dtype(device, self.config.amp)
        src = _Source(ds, device, self.config.num_workers)
        order = torch.arange(src.n)[ctx.rank :: ctx.world_size]
        stats = torch.zeros(3, dtype=torch.float64, device=self._stats_device(device))
        cl = self._channels_last(model, device)
        for x, y in src.batches(order, batch_size or max(256, self.config.batch_size), 0):
            if cl and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, dtype):
                logits = model(x)
            loss = nn.functional.cross_entropy(logits.float(), y, reduction="sum")
            stats += torch.stack(
                [
                    loss.double(),
                    (logits.argmax(1) == y).sum().double(),
                    torch.tensor(len(y), dtype=torch.float64, device=y.device),
                ]
            ).to(stats.device)
        return _dist.all_reduce_sum(stats, ctx)

    def save(
        self,
        out_dir: str | os.PathLike[str],
        metrics: dict[str, Any] | None = None,
        *,
        completed: bool = True,
    ) -> Path | None:
        """Write the model checkpoint (``model.safetensors`` + ``model.json``) on rank 0.

        ``completed=False`` marks an intermediate checkpoint of a run still in progress:
        :func:`~xrobust.models.load_model` refuses it unless asked (a killed run must not
        look finished).

        Returns:
            The path of ``model.json`` (None on other ranks).
        """
        if not self.is_main_process:
            return None
        return save_checkpoint(
            self.model,
            out_dir,
            spec=self.spec,
            arch=self.arch,
            arch_kwargs=self.arch_kwargs,
            train_config=self.config.to_dict(),
            metrics=metrics if metrics is not None else self._final_metrics(),
            training={
                "completed": bool(completed),
                "epoch": len(self.history.records),
                "epochs": int(self.config.epochs),
                "determinism": determinism_record(
                    self._ctx.device if self._ctx is not None else model_device(self.model),
                    self.config,
                ),
            },
        )

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _stats_device(device: torch.device) -> torch.device:
        return device if device.type == "cuda" else torch.device("cpu")

    def _channels_last(self, model: nn.Module, device: torch.device) -> bool:
        cl = self.config.channels_last
        if cl is None:
            cl = device.type == "cuda" and _is_conv_net(model)
        return bool(cl)

    def _final_metrics(self) -> dict[str, Any]:
        h = self.history
        m: dict[str, Any] = {}
        if h.last is not None:
            m = {k: v for k, v in asdict(h.last).items() if v is not None}
        if h.test_acc is not None:
            m["test_acc"] = h.test_acc
            m["test_loss"] = h.test_loss
            if h.test_n is not None:
                m["test_n"] = h.test_n
        if h.best_epoch is not None:
            m["best_epoch"] = h.best_epoch
        return m

    def _split(self, ds: Dataset) -> tuple[Dataset, Dataset]:
        n = len(ds)  # type: ignore[arg-type]
        n_val = round(n * self.config.val_fraction)
        if n_val < 1 or n - n_val < 1:
            raise DataError(
                f"val_fraction={self.config.val_fraction} leaves an empty split of {n} examples"
            )
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.config.seed + 1))
        return Subset(ds, perm[n_val:].tolist()), Subset(ds, perm[:n_val].tolist())

    def _epoch_order(
        self, epoch: int, n: int, gen: torch.Generator, ctx: _dist.DistContext
    ) -> torch.Tensor:
        if not ctx.enabled:
            return torch.randperm(n, generator=gen)
        # DistributedSampler semantics: a seeded permutation per epoch, padded to a multiple
        # of the world size, every world_size-th index for this rank.
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(
            range(n),  # type: ignore[arg-type]
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            shuffle=True,
            seed=self.config.seed,
        )
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.long)

    # ------------------------------------------------------------------ the fit, step by step
    #
    # ``_fit`` runs the steps below in order on one :class:`_Run` (the fit's state):
    # prepare (model, data), optimiser and schedule, resume or start afresh, parallel
    # wrappers (DDP, compile), then per epoch: train (steps, divergence check, step
    # checkpoints) and the end-of-epoch steps of :attr:`_EPOCH_END`; finally restore the
    # best weights and save. A new end-of-epoch step is a method ``(run, record)`` listed
    # in ``_EPOCH_END``; a new per-step concern goes in :meth:`_train_step`.

    def _fit(
        self,
        ctx: _dist.DistContext,
        train_ds: Dataset,
        val_ds: Dataset | None,
        out_dir: str | os.PathLike[str] | None,
        resume: bool,
        progress: ProgressFn | None,
    ) -> History:
        cfg = self.config
        t_start = time.perf_counter()
        seed_everything(cfg.seed + ctx.rank)
        if val_ds is None and cfg.val_fraction > 0:
            train_ds, val_ds = self._split(train_ds)
        run = self._prepare(ctx, train_ds, val_ds, out_dir, progress)
        self._setup_optimisation(run)
        if resume and run.run_dir is not None and has_state(run.run_dir):
            self._resume(run)
        elif ctx.is_main and run.run_dir is not None:
            self._start_afresh(run.run_dir)
        self._setup_parallel(run)
        self.history = run.history
        run.done = run.history.stopped_early or run.start_epoch >= cfg.epochs
        epoch = run.start_epoch
        while not run.done and epoch < cfg.epochs:
            t0 = time.perf_counter()
            stats, diverged = self._train_epoch(run, epoch)
            _raise_if_diverged(diverged, epoch, cfg)
            rec = self._epoch_record(run, epoch, stats, t0)
            for end_step in self._EPOCH_END:
                end_step(self, run, rec)
            epoch += 1
            _dist.barrier(ctx)
        return self._finish(run, t_start)

    def _prepare(
        self,
        ctx: _dist.DistContext,
        train_ds: Dataset,
        val_ds: Dataset | None,
        out_dir: str | os.PathLike[str] | None,
        progress: ProgressFn | None,
    ) -> _Run:
        """The model on its device (channels_last if asked) and the training data."""
        cfg, device = self.config, ctx.device
        if len(train_ds) == 0:  # type: ignore[arg-type]
            raise DataError("the training set is empty")
        model = unwrap(self.model).to(device)
        channels_last = self._channels_last(model, device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        src = _Source(train_ds, device, cfg.num_workers)
        src.check_labels(self.spec.num_classes if self.spec is not None else None)
        n_local = math.ceil(src.n / ctx.world_size) if ctx.enabled else src.n
        run = _Run(
            ctx=ctx,
            run_dir=Path(out_dir) if out_dir is not None else None,
            model=model,
            train_model=model,
            src=src,
            val_ds=val_ds,
            channels_last=channels_last,
            steps_per_epoch=math.ceil(n_local / cfg.batch_size),
            progress=progress,
            stats_dev=self._stats_device(device),
            data_gen=torch.Generator().manual_seed(cfg.seed),
        )
        run.epoch_gen_state = run.data_gen.get_state()
        return run

    def _setup_optimisation(self, run: _Run) -> None:
        """Optimiser, learning-rate schedule, gradient scaler, loss and input bounds."""
        cfg = self.config
        run.params = [p for p in run.model.parameters() if p.requires_grad]
        if not run.params:
            raise ConfigError("the model has no trainable parameters")
        lr = float(cfg.lr)  # type: ignore[arg-type]
        if cfg.optimizer == "sgd":
            run.optimizer = torch.optim.SGD(
                run.params,
                lr=lr,
                momentum=cfg.momentum,
                nesterov=cfg.momentum > 0,
                weight_decay=cfg.weight_decay,
            )
        else:
            run.optimizer = torch.optim.AdamW(run.params, lr=lr, weight_decay=cfg.weight_decay)
        total_steps = run.steps_per_epoch * cfg.epochs
        run.scheduler = torch.optim.lr_scheduler.LambdaLR(
            run.optimizer, _lr_lambda(cfg.schedule, total_steps)
        )
        run.dtype = amp_dtype(run.ctx.device, cfg.amp)
        run.scaler = torch.amp.GradScaler("cuda") if run.dtype == torch.float16 else None
        run.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        run.bounds = tuple(self.spec.bounds) if self.spec is not None else (0.0, 1.0)

    def _resume(self, run: _Run) -> None:
        """Continue from the state in the run directory (checked against the options)."""
        assert run.run_dir is not None
        cfg, ctx, run_dir = self.config, run.ctx, run.run_dir
        st = load_state(run_dir)
        self._check_resumable(st, ctx, run_dir)
        _check_determinism(st.get("determinism"), determinism_record(ctx.device, cfg), run_dir)
        try:
            run.model.load_state_dict(st["model"])
            run.optimizer.load_state_dict(st["optimizer"])
            run.scheduler.load_state_dict(st["scheduler"])
            if run.scaler is not None and st.get("scaler"):
                run.scaler.load_state_dict(st["scaler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"training state in {str(run_dir)!r} does not fit: {exc}"
            ) from exc
        _set_rng_state(st["rng"])
        run.epoch_gen_state = st["epoch_gen_state"]
        run.data_gen.set_state(st["data_gen"])
        run.history = History.from_dict(json.loads(st["history"]))
        run.start_epoch, run.start_step = int(st["epoch"]), int(st["step_in_epoch"])
        run.partial = st["partial"].to(torch.float64)
        run.best = {
            "loss": float(st["best"]["loss"]),
            "epoch": st["best"]["epoch"],
            "bad": int(st["best"]["bad"]),
            "weights": st.get("best_weights"),
        }
        run.history.resumed_from = (run.start_epoch, run.start_step)
        if ctx.is_main:
            self._rewrite_metrics(run_dir, run.history)
        _log.info("resumed from epoch %d, step %d", run.start_epoch, run.start_step)

    @staticmethod
    def _start_afresh(run_dir: Path) -> None:
        """A fresh run directory: no previous state, model or metrics left to pass for ours."""
        run_dir.mkdir(parents=True, exist_ok=True)
        if has_state(run_dir):
            # a fresh run must never be "resumed" later from a previous run's state
            _log.warning(
                "starting a new run in %s: its previous training state is removed", run_dir
            )
            shutil.rmtree(run_dir / STATE_DIR, ignore_errors=True)
        # nor may a previous run's model pass for this one's if this one is killed
        for old in ("model.json", "model.safetensors"):
            (run_dir / old).unlink(missing_ok=True)
        atomic_write_text(run_dir / METRICS_NAME, "")

    def _setup_parallel(self, run: _Run) -> None:
        """DistributedDataParallel under torchrun (not for adversarial training, whose
        gradients are averaged by hand), then ``torch.compile`` if asked."""
        cfg, ctx, device = self.config, run.ctx, run.ctx.device
        if ctx.enabled and not cfg.adversarial:
            run.ddp = nn.parallel.DistributedDataParallel(
                run.model, device_ids=[device.index] if device.type == "cuda" else None
            )
            run.train_model = run.ddp
        if cfg.compile:
            run.train_model = torch.compile(run.train_model)  # type: ignore[assignment]

    def _train_epoch(self, run: _Run, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over the training data (from the resumed step if any).

        Returns:
            ``(stats, diverged)``: loss sum, correct, adversarially correct and count of
            this process, and the first step whose loss was not finite (-1: none).
        """
        cfg = self.config
        if run.start_step == 0:
            run.epoch_gen_state = run.data_gen.get_state()
        else:
            run.data_gen.set_state(run.epoch_gen_state)
        order = self._epoch_order(epoch, run.src.n, run.data_gen, run.ctx)
        skip = run.start_step
        stats = (
            run.partial.to(run.stats_dev)
            if skip
            else torch.zeros(4, dtype=torch.float64, device=run.stats_dev)
        )
        run.start_step, run.partial = 0, torch.zeros(4, dtype=torch.float64)
        run.model.train()
        stage = f"epoch {epoch + 1}/{cfg.epochs}"
        report = run.progress if run.ctx.is_main else None
        step = skip
        diverged = torch.full((), -1, dtype=torch.long, device=run.stats_dev)  # first bad step
        for x, y in run.src.batches(
            order[skip * cfg.batch_size :], cfg.batch_size, cfg.seed + epoch
        ):
            loss, logits, adv_logits = self._train_step(run, x, y)
            step += 1
            diverged = _accumulate(stats, diverged, step, loss, logits, adv_logits, y)
            if report is not None:
                report(stage, step, run.steps_per_epoch)
            if (
                cfg.checkpoint_every_steps
                and step % cfg.checkpoint_every_steps == 0
                and step < run.steps_per_epoch
            ):
                _raise_if_diverged(diverged, epoch, cfg)
                self._save_state(run, epoch, step, stats)
        return stats, diverged

    def _train_step(
        self, run: _Run, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Loss of one batch (clean or adversarial) and one optimiser step on it.

        Returns:
            ``(loss, clean logits, adversarial logits or None)``.
        """
        cfg = self.config
        if run.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        adv_logits = None
        with autocast(run.ctx.device, run.dtype):
            if cfg.adversarial:
                from xrobust.trainer.adversarial import adversarial_loss

                out = adversarial_loss(
                    run.train_model, x, y, cfg, bounds=run.bounds, criterion=run.criterion
                )
                loss, logits, adv_logits = out.loss, out.clean_logits, out.adv_logits
            else:
                logits = run.train_model(x)
                loss = run.criterion(logits, y)
        self._optimiser_step(run, loss)
        return loss, logits, adv_logits

    def _optimiser_step(self, run: _Run, loss: torch.Tensor) -> None:
        """Backward pass, gradient averaging (without DDP), clipping, step and schedule."""
        cfg, optimizer, scaler = self.config, run.optimizer, run.scaler
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
        else:
            loss.backward()
        if run.ctx.enabled and run.ddp is None:
            self._all_reduce_grads(run.params, run.ctx)
        if cfg.grad_clip is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(run.params, cfg.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # scaler-skipped steps
            run.scheduler.step()

    def _epoch_record(self, run: _Run, epoch: int, stats: torch.Tensor, t0: float) -> EpochRecord:
        """The epoch's metrics, reduced over processes, with the validation set's."""
        _dist.all_reduce_sum(stats, run.ctx)
        s = stats.cpu().tolist()
        n_seen = max(s[3], 1.0)
        val = self.evaluate(run.val_ds) if run.val_ds is not None else None
        return EpochRecord(
            epoch=epoch + 1,
            train_loss=s[0] / n_seen,
            train_acc=s[1] / n_seen,
            train_adv_acc=(s[2] / n_seen) if self.config.adversarial else None,
            val_loss=val["loss"] if val else None,
            val_acc=val["acc"] if val else None,
            lr=float(run.scheduler.get_last_lr()[0]),
            samples=int(s[3]),
            steps=run.steps_per_epoch,
            time_s=time.perf_counter() - t0,
        )

    # ---- end-of-epoch steps, run in the order of _EPOCH_END

    def _record_epoch(self, run: _Run, rec: EpochRecord) -> None:
        run.history.records.append(rec)
        _log.info("epoch %s", json.dumps(asdict(rec)))

    def _early_stopping(self, run: _Run, rec: EpochRecord) -> None:
        """Track the best validation loss (and weights, with patience); stop on patience."""
        if rec.val_loss is None:
            return
        cfg, best = self.config, run.best
        if rec.val_loss < best["loss"]:
            best.update(loss=rec.val_loss, epoch=rec.epoch, bad=0)
            if cfg.patience is not None:
                best["weights"] = {
                    k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()
                }
        else:
            best["bad"] += 1
        run.history.best_epoch = best["epoch"]
        if cfg.patience is not None and best["bad"] >= cfg.patience:
            run.history.stopped_early = True
            run.done = True

    def _checkpoint_epoch(self, run: _Run, rec: EpochRecord) -> None:
        """Append the metrics line; save the model and the resumable state when due."""
        if not run.ctx.is_main or run.run_dir is None:
            return
        with open(run.run_dir / METRICS_NAME, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(rec), allow_nan=False) + "\n")
        epoch = rec.epoch
        last = run.done or epoch >= self.config.epochs
        if last or epoch % self.config.checkpoint_every == 0:
            if not last:
                self.save(run.run_dir, completed=False)
            self._save_state(run, epoch, 0, torch.zeros(4, dtype=torch.float64))

    _EPOCH_END: tuple[Callable[[Trainer, _Run, EpochRecord], None], ...] = (
        _record_epoch,
        _early_stopping,
        _checkpoint_epoch,
    )

    def _save_state(self, run: _Run, epoch: int, step: int, part: torch.Tensor) -> None:
        """The resumable state after ``step`` steps of epoch ``epoch`` (rank 0, with a run
        directory): everything a bitwise-identical continuation needs."""
        if run.run_dir is None or not run.ctx.is_main:
            return
        cfg, best = self.config, run.best
        st = {
            "config": cfg.to_dict(),
            "world_size": run.ctx.world_size,
            "epoch": epoch,
            "step_in_epoch": step,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "rng": _rng_state(),
            "data_gen": run.data_gen.get_state(),
            "epoch_gen_state": run.epoch_gen_state,
            "partial": part.detach().cpu(),
            "history": json.dumps(run.history.to_dict()),
            "best": {"loss": best["loss"], "epoch": best["epoch"], "bad": best["bad"]},
            "determinism": determinism_record(run.ctx.device, cfg),
        }
        if best["weights"] is not None:
            st["best_weights"] = best["weights"]
        save_state(run.run_dir, st, tag=f"e{epoch:04d}s{step:06d}")

    def _finish(self, run: _Run, t_start: float) -> History:
        """Restore the best weights (early stopping), eval mode, the final checkpoint."""
        history, model = run.history, run.model
        if self.config.patience is not None and run.best["weights"] is not None:
            model.load_state_dict(run.best["weights"])
        history.best_epoch = run.best["epoch"]
        history.train_time_s = time.perf_counter() - t_start
        model.eval()
        self.model = model
        if run.run_dir is not None:
            self.save(run.run_dir)
            _dist.barrier(run.ctx)
        return history

    @staticmethod
    def _all_reduce_grads(params: list[nn.Parameter], ctx: _dist.DistContext) -> None:
        """Average gradients over processes (used instead of DDP for adversarial training,
        whose inner attack runs extra forward/backward passes that DDP's reducer forbids)."""
        import torch.distributed as dist

        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(ctx.world_size)

    def _check_resumable(self, st: dict[str, Any], ctx: _dist.DistContext, run_dir: Path) -> None:
        saved = st.get("config", {})
        now = self.config.to_dict()
        diffs = [
            f"{k}: saved {saved.get(k)!r}, now {now[k]!r}"
            for k in TRAJECTORY_FIELDS
            if saved.get(k) != now[k]
        ]
        if diffs:
            raise ConfigError(
                f"cannot resume {str(run_dir)!r} with different options ({'; '.join(diffs)}); "
                "use the original options or a new --out directory"
            )
        if int(st.get("world_size", 1)) != ctx.world_size:
            raise ConfigError(
                f"cannot resume {str(run_dir)!r}: it was trained by {st.get('world_size')} "
                f"process(es), this run has {ctx.world_size}"
            )

    @staticmethod
    def _rewrite_metrics(run_dir: Path, history: History) -> None:
        lines = "".join(json.dumps(asdict(r), allow_nan=False) + "\n" for r in history.records)
        atomic_write_text(run_dir / METRICS_NAME, lines)


def _raise_if_diverged(diverged: torch.Tensor, epoch: int, cfg: TrainConfig) -> None:
    """A :class:`TrainingError` naming the epoch and step where the loss became NaN/Inf."""
    step = int(diverged)
    if step < 0:
        return
    raise TrainingError(
        f"training diverged: the loss became NaN or infinite at epoch {epoch + 1}, step {step} "
        f"(lr {cfg.lr:g}, optimizer {cfg.optimizer}); lower the learning rate (--lr) or clip "
        "gradients (grad_clip). The last saved state is kept; nothing of the diverged epoch "
        "was recorded"
    )
