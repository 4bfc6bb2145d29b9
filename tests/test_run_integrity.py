"""Run directories are never clobbered or mistaken for finished runs.

- two trainings into one folder at once: one wins, the other gets a clear error before it
  writes anything, and no file mixes them;
- an interrupted run's intermediate checkpoint is marked incomplete and refused on load;
- a resume under another thread count warns (the weights will not be bitwise identical);
- a diverged loss is a clear error naming the epoch and step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from xrobust.data.spec import DatasetBundle, DatasetSpec
from xrobust.errors import CheckpointError, ConfigError, TrainingError
from xrobust.models import build_model, load_model, read_metadata
from xrobust.trainer import TrainConfig, Trainer, train
from xrobust.trainer.lock import run_lock

SPEC = DatasetSpec("gen", "tabular", (12,), 3, ("a", "b", "c"), (-6.0, 6.0))


def _data(n: int = 192) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 12, generator=g)
    return x, (x[:, :3].argmax(1)) % 3


class _Data(Dataset):
    """In-memory data that can sleep per item, or fail after ``fail_after`` items."""

    def __init__(self, delay: float = 0.0, fail_after: int | None = None) -> None:
        self.x, self.y = _data()
        self.delay, self.fail_after, self.served = delay, fail_after, 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        self.served += 1
        if self.fail_after is not None and self.served > self.fail_after:
            raise KeyboardInterrupt  # stands in for Ctrl-C / a kill mid-epoch
        if self.delay:
            time.sleep(self.delay)
        return self.x[i], self.y[i]


WINNER = textwrap.dedent(
    """
    import sys, time, torch
    from torch.utils.data import Dataset, TensorDataset
    from xrobust.data.spec import DatasetBundle, DatasetSpec
    from xrobust.trainer import TrainConfig, train
    torch.set_num_threads(1)
    spec = DatasetSpec("gen", "tabular", (30,), 2, ("0", "1"), (-6.0, 6.0))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 30, generator=g); y = (x[:, 0] > 0).long()
    release, t0 = sys.argv[2], time.monotonic()
    import os
    class Slow(Dataset):  # holds the run open until the test releases it (at most 300 s)
        def __len__(self): return len(x)
        def __getitem__(self, i):
            while not os.path.exists(release) and time.monotonic() - t0 < 300:
                time.sleep(0.01)
            return x[i], y[i]
    bundle = DatasetBundle(Slow(), TensorDataset(x, y), spec)
    train(bundle, "mlp", TrainConfig(epochs=4, batch_size=32, device="cpu", seed=11),
          sys.argv[1], progress=False)
    print("winner done")
    """
)


def test_two_concurrent_trainings_one_wins_the_other_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    first = subprocess.Popen(
        [sys.executable, "-c", WINNER, str(run), str(tmp_path / "release")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        lock = run / ".lock"
        while not (lock.exists() and lock.read_text().strip()):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.02)
        second = subprocess.run(
            [sys.executable, "-m", "xrobust", "train", "--data", "breast_cancer", "--model",
             "mlp", "--epochs", "2", "--seed", "22", "--out", str(run), "--no-progress"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        still_running = first.poll() is None
        (tmp_path / "release").write_text("")
        _out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert still_running, "the first run ended before the second tried: nothing was tested"
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert "is being written by another training run (pid" in lines[0]
    assert "checkpoint:" not in second.stdout
    assert first.returncode == 0, err
    # every file is the winner's: 4 epochs of seed 11 on 30 features, none of seed 22's
    log = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    meta = read_metadata(run)
    assert meta["train_config"]["seed"] == 11 and meta["train_config"]["epochs"] == 4
    assert meta["dataset"]["input_shape"] == [30]
    assert meta["training"]["completed"] is True
    load_model(run)
    # and the lock is free again: a later run into the folder is allowed
    with run_lock(run):
        pass


def test_a_second_writer_in_the_same_process_is_refused(tmp_path: Path) -> None:
    import threading

    got: list[BaseException] = []
    with run_lock(tmp_path):

        def other() -> None:
            try:
                with run_lock(tmp_path):
                    pass
            except ConfigError as exc:
                got.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        with run_lock(tmp_path):  # the same thread may re-enter (train() around fit())
            pass
    assert got and "being written by another training run" in str(got[0])


def test_lock_refuses_an_out_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with (
        pytest.raises(ConfigError, match="a path component is a file"),
        run_lock(tmp_path / "f" / "run"),
    ):
        pass


def test_interrupted_run_is_marked_incomplete_and_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("mlp", SPEC, hidden=[16])
    cfg = TrainConfig(epochs=5, batch_size=32, device="cpu", seed=0)
    data = _Data(fail_after=192 * 2 + 40)  # dies in epoch 3
    with pytest.raises(KeyboardInterrupt):
        Trainer(model, cfg, spec=SPEC).fit(data, out_dir=tmp_path, progress=False)
    meta = read_metadata(tmp_path)
    assert meta["training"]["completed"] is False
    assert (meta["training"]["epoch"], meta["training"]["epochs"]) == (2, 5)
    with pytest.raises(CheckpointError, match=r"did not finish \(saved after epoch 2 of 5\)"):
        load_model(tmp_path)
    with pytest.warns(UserWarning, match="did not finish"):
        load_model(tmp_path, allow_incomplete=True)
    # resuming finishes the run and clears the mark
    torch.manual_seed(0)
    model = build_model("mlp", SPEC, hidden=[16])
    Trainer(model, cfg, spec=SPEC).fit(_Data(), out_dir=tmp_path, resume=True, progress=False)
    assert read_metadata(tmp_path)["training"]["completed"] is True
    load_model(tmp_path)


def test_fresh_run_removes_the_previous_model(tmp_path: Path) -> None:
    """A new (not resumed) run into a folder must not leave the old model passing for its own."""
    x, y = _data()
    from torch.utils.data import TensorDataset

    bundle = DatasetBundle(TensorDataset(x, y), TensorDataset(x, y), SPEC)
    train(bundle, "mlp", TrainConfig(epochs=1, device="cpu"), tmp_path, progress=False)
    assert (tmp_path / "model.json").exists()
    torch.manual_seed(0)
    model = build_model("mlp", SPEC, hidden=[16])
    with pytest.raises(KeyboardInterrupt):
        Trainer(model, TrainConfig(epochs=3, device="cpu"), spec=SPEC).fit(
            _Data(fail_after=50), out_dir=tmp_path, progress=False
        )
    assert not (tmp_path / "model.json").exists()
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_resume_with_another_thread_count_warns(tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=3, batch_size=32, device="cpu", seed=0)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        with pytest.raises(KeyboardInterrupt):
            Trainer(build_model("mlp", SPEC, hidden=[16]), cfg, spec=SPEC).fit(
                _Data(fail_after=192 + 10), out_dir=tmp_path, progress=False
            )
        torch.set_num_threads(2)
        torch.manual_seed(0)
        with pytest.warns(UserWarning, match=r"num_threads 1 then, 2 now.*not be bitwise"):
            Trainer(build_model("mlp", SPEC, hidden=[16]), cfg, spec=SPEC).fit(
                _Data(), out_dir=tmp_path, resume=True, progress=False
            )
    finally:
        torch.set_num_threads(n)
    det = read_metadata(tmp_path)["training"]["determinism"]
    assert det["num_threads"] == 2 and det["device"] == "cpu"


def test_diverged_loss_is_a_clear_error(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("mlp", SPEC, hidden=[16])
    cfg = TrainConfig(epochs=3, batch_size=32, device="cpu", lr=1e6, optimizer="sgd", seed=0)
    with pytest.raises(TrainingError, match=r"diverged.*epoch 1, step \d+ \(lr 1e\+06"):
        Trainer(model, cfg, spec=SPEC).fit(_Data(), out_dir=tmp_path, progress=False)
    # nothing non-finite was written: metrics.jsonl stays valid JSON lines (here: none)
    assert (tmp_path / "metrics.jsonl").read_text() == ""
