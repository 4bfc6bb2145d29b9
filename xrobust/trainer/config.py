"""``TrainConfig``: every option of a training run, validated on construction."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from xrobust.errors import ConfigError

__all__ = ["ADVERSARIAL_METHODS", "TrainConfig"]

ADVERSARIAL_METHODS = ("pgd", "fgsm", "trades")
_OPTIMIZERS = ("sgd", "adamw")
_SCHEDULES = ("none", "cosine", "onecycle")
_AMP = (False, True, "auto", "bf16", "fp16")
_DEFAULT_LR = {"adamw": 4e-3, "sgd": 0.05}

# Options that change the training trajectory: a resumed run must use the same values.
TRAJECTORY_FIELDS = (
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "weight_decay",
    "momentum",
    "schedule",
    "label_smoothing",
    "val_fraction",
    "patience",
    "seed",
    "amp",
    "grad_clip",
    "adversarial",
    "adv_eps",
    "adv_norm",
    "adv_steps",
    "adv_step_size",
    "trades_beta",
)


def _need(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class TrainConfig:
    """Options of a training run. The defaults train the built-in demos well on a CPU.

    Attributes:
        epochs: passes over the training set.
        batch_size: examples per step (per process under torchrun).
        lr: peak learning rate; None picks 4e-3 for AdamW and 0.05 for SGD.
        optimizer: "adamw" or "sgd" (with ``momentum``, Nesterov).
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay.
        momentum: SGD momentum.
        schedule: "none", "cosine" (per step, to 0) or "onecycle" (per step).
        label_smoothing: cross-entropy label smoothing in [0, 1) (default 0.1).
        val_fraction: share of the training set held out for validation when no
            validation set is given (0 disables).
        patience: early stopping after this many epochs without a better validation
            loss (None: never stop early); the best weights are restored at the end.
        seed: seeds weight-independent randomness (data order, dropout, attacks).
        device: "auto" (cuda, mps, cpu), "cpu", "cuda", "cuda:1", ...
        amp: mixed precision on CUDA: False, True/"auto" (bf16 where supported, else fp16
            with a gradient scaler), "bf16" or "fp16". Ignored on CPU.
        channels_last: memory format for conv nets; None: on for conv nets on CUDA.
        compile: wrap the model in ``torch.compile``.
        num_workers: DataLoader workers (in-memory tensor datasets are sliced directly).
        checkpoint_every: save the resumable state every N epochs (needs ``out_dir``).
        checkpoint_every_steps: also save it every N optimizer steps (None: off).
        grad_clip: clip the gradient norm to this value (None: off).
        deterministic: ask for deterministic algorithms (CUDA: also cuDNN/cuBLAS settings).
        adversarial: adversarial training: None, "pgd", "fgsm" or "trades".
        adv_eps: perturbation budget in input units.
        adv_norm: "linf" or "l2".
        adv_steps: attack iterations (PGD/TRADES).
        adv_step_size: attack step size (None: the attack's default).
        trades_beta: TRADES robustness weight.

    Example:
        >>> from xrobust.trainer import TrainConfig
        >>> TrainConfig(epochs=3, optimizer="sgd").lr
        0.05
    """

    epochs: int = 15
    batch_size: int = 64
    lr: float | None = None
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "onecycle"
    label_smoothing: float = 0.1
    val_fraction: float = 0.0
    patience: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool | str = False
    channels_last: bool | None = None
    compile: bool = False
    num_workers: int = 0
    checkpoint_every: int = 1
    checkpoint_every_steps: int | None = None
    grad_clip: float | None = None
    deterministic: bool = True
    adversarial: str | None = None
    adv_eps: float = 0.1
    adv_norm: str = "linf"
    adv_steps: int = 10
    adv_step_size: float | None = None
    trades_beta: float = 6.0

    def __post_init__(self) -> None:
        # the checks run in this order (the first problem found is the one reported)
        self._check_length()
        self._check_optimizer()
        self._check_objective()
        self._check_runtime()
        self._check_checkpoints()
        self._check_adversarial()

    def _check_length(self) -> None:
        _need(
            _is_int(self.epochs) and self.epochs >= 1,
            f"epochs must be an integer >= 1, got {self.epochs!r}",
        )
        _need(
            _is_int(self.batch_size) and self.batch_size >= 1,
            f"batch_size must be an integer >= 1, got {self.batch_size!r}",
        )

    def _check_optimizer(self) -> None:
        """The optimizer, its learning rate (default per optimizer) and the schedule."""
        self.optimizer = str(self.optimizer).lower()
        _need(
            self.optimizer in _OPTIMIZERS,
            f"unknown optimizer {self.optimizer!r}; expected one of {', '.join(_OPTIMIZERS)}",
        )
        if self.lr is None:
            self.lr = _DEFAULT_LR[self.optimizer]
        _need(_is_num(self.lr) and self.lr > 0, f"lr must be a number > 0, got {self.lr!r}")
        _need(
            _is_num(self.weight_decay) and self.weight_decay >= 0,
            f"weight_decay must be >= 0, got {self.weight_decay!r}",
        )
        _need(
            _is_num(self.momentum) and 0 <= self.momentum < 1,
            f"momentum must be in [0, 1), got {self.momentum!r}",
        )
        self.schedule = str(self.schedule).lower()
        _need(
            self.schedule in _SCHEDULES,
            f"unknown schedule {self.schedule!r}; expected one of {', '.join(_SCHEDULES)}",
        )

    def _check_objective(self) -> None:
        """Label smoothing, the validation split, early stopping and the seed."""
        _need(
            _is_num(self.label_smoothing) and 0 <= self.label_smoothing < 1,
            f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}",
        )
        _need(
            _is_num(self.val_fraction) and 0 <= self.val_fraction < 1,
            f"val_fraction must be in [0, 1), got {self.val_fraction!r}",
        )
        _need(
            self.patience is None or (_is_int(self.patience) and self.patience >= 1),
            f"patience must be an integer >= 1 or None, got {self.patience!r}",
        )
        _need(_is_int(self.seed), f"seed must be an integer, got {self.seed!r}")

    def _check_runtime(self) -> None:
        """Mixed precision (strings such as "on"/"off" accepted) and data workers."""
        if isinstance(self.amp, str):
            low = self.amp.lower()
            self.amp = {"true": True, "on": True, "false": False, "off": False, "none": False}.get(
                low, low
            )
        _need(
            self.amp in _AMP,
            f"amp must be one of false, true, 'auto', 'bf16', 'fp16', got {self.amp!r}",
        )
        _need(
            _is_int(self.num_workers) and self.num_workers >= 0,
            f"num_workers must be >= 0, got {self.num_workers!r}",
        )

    def _check_checkpoints(self) -> None:
        """How often the state is saved, and gradient clipping."""
        _need(
            _is_int(self.checkpoint_every) and self.checkpoint_every >= 1,
            f"checkpoint_every must be an integer >= 1 (epochs), got {self.checkpoint_every!r}",
        )
        _need(
            self.checkpoint_every_steps is None
            or (_is_int(self.checkpoint_every_steps) and self.checkpoint_every_steps >= 1),
            f"checkpoint_every_steps must be an integer >= 1 or None, got {self.checkpoint_every_steps!r}",
        )
        _need(
            self.grad_clip is None or (_is_num(self.grad_clip) and self.grad_clip > 0),
            f"grad_clip must be > 0 or None, got {self.grad_clip!r}",
        )

    def _check_adversarial(self) -> None:
        """The adversarial training method and its threat model and attack options."""
        if self.adversarial is not None:
            self.adversarial = str(self.adversarial).lower()
            _need(
                self.adversarial in ADVERSARIAL_METHODS,
                f"unknown adversarial training method {self.adversarial!r}; expected one of "
                f"{', '.join(ADVERSARIAL_METHODS)} (or None)",
            )
        _need(
            _is_num(self.adv_eps) and self.adv_eps > 0,
            f"adv_eps must be > 0, got {self.adv_eps!r}",
        )
        from xrobust.attacks.norms import NORMS, get_norm

        try:
            self.adv_norm = get_norm(self.adv_norm).name
        except ConfigError:
            _need(False, f"adv_norm must be one of {', '.join(NORMS)}, got {self.adv_norm!r}")
        _need(
            _is_int(self.adv_steps) and self.adv_steps >= 1,
            f"adv_steps must be an integer >= 1, got {self.adv_steps!r}",
        )
        _need(
            self.adv_step_size is None or (_is_num(self.adv_step_size) and self.adv_step_size > 0),
            f"adv_step_size must be > 0 or None, got {self.adv_step_size!r}",
        )
        _need(
            _is_num(self.trades_beta) and self.trades_beta >= 0,
            f"trades_beta must be >= 0, got {self.trades_beta!r}",
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**d)
