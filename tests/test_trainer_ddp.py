"""Two processes under torchrun (gloo on CPU): DistributedSampler sharding, gradient
averaging, metrics reduced across ranks, rank 0 alone writing the run directory."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import torch
    import torch.distributed as dist
    from torch.utils.data import TensorDataset
    from xrobust.data.spec import DatasetSpec
    from xrobust.models import build_model
    from xrobust.trainer import TrainConfig, Trainer

    torch.set_num_threads(1)
    run, report = sys.argv[1], sys.argv[2]
    SPEC = DatasetSpec("gen", "tabular", (8,), 2, ("a", "b"), (-6.0, 6.0))
    g = torch.Generator().manual_seed(0)
    X = torch.randn(320, 8, generator=g)
    Y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    train, val = TensorDataset(X[:256], Y[:256]), TensorDataset(X[256:], Y[256:])
    torch.manual_seed(0)
    model = build_model("mlp", SPEC, hidden=[16])
    trainer = Trainer(model, TrainConfig(epochs=2, batch_size=32, device="cpu"), spec=SPEC)
    hist = trainer.fit(train, val_ds=val, out_dir=run, progress=False)
    w = b"".join(v.numpy().tobytes() for v in trainer.model.state_dict().values())
    # adversarial training averages gradients by hand (no DDP wrapper): replicas stay equal
    torch.manual_seed(0)
    adv = Trainer(build_model("mlp", SPEC, hidden=[16]),
                  TrainConfig(epochs=1, batch_size=32, device="cpu", adversarial="fgsm", adv_eps=0.3),
                  spec=SPEC)
    adv_hist = adv.fit(train, progress=False)
    wa = b"".join(v.numpy().tobytes() for v in adv.model.state_dict().values())
    rank = dist.get_rank()
    with open(os.path.join(report, f"rank{rank}.json"), "w") as fh:
        json.dump({"world": dist.get_world_size(), "backend": dist.get_backend(),
                   "history": hist.to_dict(), "weights": hashlib.sha256(w).hexdigest(),
                   "adv_weights": hashlib.sha256(wa).hexdigest(),
                   "adv_acc": adv_hist.records[-1].train_adv_acc}, fh)
    """
)


def test_two_process_gloo_run(tmp_path: Path) -> None:
    run, report = tmp_path / "run", tmp_path / "report"
    report.mkdir()
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(script), str(run), str(report)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((report / "rank0.json").read_text())
    r1 = json.loads((report / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2 and r0["backend"] == "gloo"
    # DDP keeps the replicas identical, and both ranks hold the same reduced metrics
    assert r0["weights"] == r1["weights"]
    assert r0["adv_weights"] == r1["adv_weights"] and r0["adv_acc"] == r1["adv_acc"] is not None
    recs0, recs1 = r0["history"]["records"], r1["history"]["records"]
    for a, b in zip(recs0, recs1):
        a.pop("time_s"), b.pop("time_s")
        assert a == b
    assert [r["samples"] for r in recs0] == [256, 256]  # each example once, summed over ranks
    assert [r["steps"] for r in recs0] == [4, 4]  # 128 per rank / 32
    # only rank 0 wrote the run directory, and its checkpoint reproduces the reduced metrics
    assert sorted(p.name for p in run.iterdir()) == [
        ".lock",  # rank 0's run-directory lock (released; the file stays, see trainer.lock)
        "metrics.jsonl",
        "model.json",
        "model.safetensors",
        "state",
    ]
    log = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    from xrobust.models import load_model

    model = load_model(run)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 8, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    with torch.no_grad():
        logits = model(x[256:])
    acc = (logits.argmax(1) == y[256:]).float().mean().item()
    loss = torch.nn.functional.cross_entropy(logits, y[256:]).item()
    assert recs0[-1]["val_acc"] == pytest.approx(acc)
    assert recs0[-1]["val_loss"] == pytest.approx(loss, rel=1e-5)
    w = b"".join(v.numpy().tobytes() for v in model.state_dict().values())
    assert hashlib.sha256(w).hexdigest() == r0["weights"]
