"""GPU paths: mixed precision (bf16 and fp16 with a gradient scaler), channels_last,
determinism on CUDA, resume under AMP, DDP with NCCL. Skipped without CUDA."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from xrobust.data.spec import DatasetSpec
from xrobust.models import build_model, load_model
from xrobust.trainer import TrainConfig, Trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

SPEC = DatasetSpec("d", "image", (1, 28, 28), 10, tuple("0123456789"), (0.0, 1.0))


@pytest.fixture(scope="module")
def data(digits28: dict) -> tuple[TensorDataset, TensorDataset]:
    return (
        TensorDataset(digits28["x_train"], digits28["y_train"]),
        TensorDataset(digits28["x_test"], digits28["y_test"]),
    )


def _fit(data, tmp: Path | None = None, resume: bool = False, **kw):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build_model("small_cnn", SPEC)
    cfg = TrainConfig(**{"epochs": 3, "device": "cuda", **kw})
    trainer = Trainer(model, cfg, spec=SPEC)
    hist = trainer.fit(data[0], data[1], out_dir=tmp, resume=resume, progress=False)
    return trainer, hist


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_trains_to_good_accuracy(data, amp: str) -> None:
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("bf16 not supported on this GPU")
    trainer, hist = _fit(data, amp=amp)
    assert all(torch.isfinite(torch.tensor(r.train_loss)) for r in hist.records)
    assert hist.records[-1].val_acc > 0.9
    assert next(trainer.model.parameters()).dtype == torch.float32  # master weights stay fp32


def test_channels_last_is_automatic_for_conv_nets(data) -> None:
    trainer, _ = _fit(data, epochs=1)
    w = trainer.model.features[0].weight
    assert w.is_contiguous(memory_format=torch.channels_last)
    trainer, _ = _fit(data, epochs=1, channels_last=False)
    assert trainer.model.features[0].weight.is_contiguous()


def test_cuda_runs_are_deterministic(data) -> None:
    a, _ = _fit(data, epochs=2)
    b, _ = _fit(data, epochs=2)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


class _Items(Dataset):
    """Map-style dataset (DataLoader path: pinned memory); can crash after N reads."""

    def __init__(self, ds: TensorDataset, fail_after: int | None = None) -> None:
        self.x, self.y = ds.tensors
        self.fail_after, self.reads = fail_after, 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise RuntimeError("simulated crash")
        return self.x[i], self.y[i]


def test_resume_under_fp16_amp_is_exact(data, tmp_path: Path) -> None:
    """Scaler, optimizer, scheduler and CUDA RNG states survive a crash: same weights."""
    ref, _ = _fit((_Items(data[0]), data[1]), epochs=2, amp="fp16")
    crash = _Items(data[0], fail_after=len(data[0]) + 300)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit((crash, data[1]), tmp_path, epochs=2, amp="fp16", checkpoint_every_steps=3)
    resumed, hist = _fit(
        (_Items(data[0]), data[1]),
        tmp_path,
        resume=True,
        epochs=2,
        amp="fp16",
        checkpoint_every_steps=3,
    )
    assert hist.resumed_from is not None and hist.resumed_from[0] == 1
    sa, sb = ref.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    model = load_model(tmp_path, device="cuda")
    assert next(model.parameters()).is_cuda


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_ddp_nccl_two_gpus(tmp_path: Path) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, torch
            import torch.distributed as dist
            from torch.utils.data import Dataset, TensorDataset
            from xrobust.data.spec import DatasetSpec
            from xrobust.models import build_model
            from xrobust.trainer import TrainConfig, Trainer
            spec = DatasetSpec("g", "tabular", (8,), 2, ("a", "b"), (-6.0, 6.0))
            x = torch.randn(512, 8, generator=torch.Generator().manual_seed(0))
            y = (x[:, 0] > 0).long()
            torch.manual_seed(0)
            t = Trainer(build_model("mlp", spec), TrainConfig(epochs=2, device="cuda"), spec=spec)
            t.fit(TensorDataset(x, y), out_dir=sys.argv[1], progress=False)
            assert dist.get_backend() == "nccl"
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(tmp_path / "run"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "model.json").exists()
