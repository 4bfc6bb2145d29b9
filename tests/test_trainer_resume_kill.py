"""Resume after a real ``kill -9``: a training subprocess is SIGKILLed once it has saved its
first (mid-epoch) state; the resumed run must reach bit-for-bit the weights of an
uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

# Shared by the subprocess and this process: same data, model and config.
COMMON = textwrap.dedent(
    """
    import time
    import torch
    from torch.utils.data import Dataset
    from xrobust.data.spec import DatasetSpec
    from xrobust.models import build_model
    from xrobust.trainer import TrainConfig, Trainer

    torch.set_num_threads(1)
    SPEC = DatasetSpec("gen", "tabular", (12,), 3, ("a", "b", "c"), (-6.0, 6.0))
    g = torch.Generator().manual_seed(0)
    X = torch.randn(384, 12, generator=g)
    Y = (X[:, :3].argmax(1) + (X[:, 3] > 1.5).long()) % 3

    class SlowData(Dataset):
        def __init__(self, delay):
            self.delay = delay
        def __len__(self):
            return len(X)
        def __getitem__(self, i):
            if self.delay:
                time.sleep(self.delay)
            return X[i], Y[i]

    CFG = TrainConfig(epochs=4, batch_size=32, device="cpu", seed=7, checkpoint_every_steps=5)

    def make_model(seed=0):
        torch.manual_seed(seed)
        return build_model("mlp", SPEC, hidden=[32, 32], dropout=0.2)
    """
)

CHILD = COMMON + textwrap.dedent(
    """
    import sys
    Trainer(make_model(), CFG, spec=SPEC).fit(SlowData(0.002), out_dir=sys.argv[1], progress=False)
    """
)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_resume_after_kill9_reaches_identical_weights(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(run)], env=env)
    index = run / "state" / "state.json"
    try:
        deadline = time.monotonic() + 120
        while not index.exists():
            assert proc.poll() is None, "the training subprocess ended before saving any state"
            assert time.monotonic() < deadline, "no training state appeared within 120 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    saved = json.loads(index.read_text())["tree"]
    epoch_step = [v for k, v in saved["$d"] if k in ("epoch", "step_in_epoch")]
    assert epoch_step[0] < 4, f"the run finished before it was killed: {epoch_step}"
    assert not (run / "model.json").exists() or epoch_step != [4, 0]

    ns: dict = {}
    exec(COMMON, ns)
    ref = ns["make_model"]()
    ref_hist = ns["Trainer"](ref, ns["CFG"], spec=ns["SPEC"]).fit(ns["SlowData"](0), progress=False)

    resumed = ns["make_model"](seed=123)  # a different init: the weights must come from the state
    hist = ns["Trainer"](resumed, ns["CFG"], spec=ns["SPEC"]).fit(
        ns["SlowData"](0), out_dir=run, resume=True, progress=False
    )
    assert hist.resumed_from == tuple(epoch_step)
    a, b = ref.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), (
        "resumed weights differ from the uninterrupted run"
    )
    assert [r.train_loss for r in hist.records] == [r.train_loss for r in ref_hist.records]
    log = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    assert (run / "model.json").exists()
