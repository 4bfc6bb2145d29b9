"""Trainer: config validation, determinism, metrics log, data paths, early stopping,
in-process resume, the adversarial-training call site, and the no-pickle state format."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from xrobust.data.spec import DatasetSpec
from xrobust.errors import CheckpointError, ConfigError, DataError
from xrobust.models import build_model, load_model
from xrobust.trainer import History, TrainConfig, Trainer
from xrobust.trainer.state import load_state, save_state

SPEC = DatasetSpec("bc", "tabular", (30,), 2, ("malignant", "benign"), (-10.0, 10.0))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models train faster on one thread (and do not suffer from a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _cfg(**kw: object) -> TrainConfig:
    base = {"epochs": 3, "batch_size": 32, "device": "cpu", "seed": 3}
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _model(seed: int = 0, **kw: object) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", SPEC, **kw)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def bc(breast_cancer: dict) -> tuple[TensorDataset, TensorDataset]:
    return (
        TensorDataset(breast_cancer["x_train"], breast_cancer["y_train"]),
        TensorDataset(breast_cancer["x_test"], breast_cancer["y_test"]),
    )


class _ItemDataset(Dataset):
    """A map-style dataset (not a TensorDataset): goes through the DataLoader path.
    Optionally raises after ``fail_after`` item reads, to interrupt a fit."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, fail_after: int | None = None) -> None:
        self.x, self.y, self.fail_after, self.reads = x, y, fail_after, 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise RuntimeError("simulated crash")
        return self.x[i], self.y[i]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"adversarial": "pgdd"}, "adversarial"),
        ({"adversarial": "pgd", "adv_eps": 0.0}, "adv_eps"),
        ({"adversarial": "pgd", "adv_steps": 0}, "adv_steps"),
        ({"adv_norm": "l3"}, "adv_norm"),
        ({"optimizer": "adam8"}, "optimizer"),
        ({"schedule": "step"}, "schedule"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"amp": "fp8"}, "amp"),
        ({"patience": 0}, "patience"),
    ],
)
def test_config_validation(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kw)


def test_config_round_trips_and_defaults() -> None:
    cfg = TrainConfig(adversarial="PGD", amp="bf16", optimizer="SGD")
    assert cfg.adversarial == "pgd" and cfg.optimizer == "sgd" and cfg.lr == 0.05
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="unknown TrainConfig"):
        TrainConfig.from_dict({"epochz": 3})


def test_same_seed_same_weights_bitwise(bc) -> None:
    train, _ = bc
    runs = []
    for _ in range(2):
        m = _model(dropout=0.2)  # dropout: the global RNG must be seeded by the trainer too
        Trainer(m, _cfg(), spec=SPEC).fit(train, progress=False)
        runs.append(_weights(m))
    assert _same(runs[0], runs[1])
    m = _model(dropout=0.2)
    Trainer(m, _cfg(seed=4), spec=SPEC).fit(train, progress=False)
    assert not _same(runs[0], _weights(m))


def test_dataloader_path_matches_tensor_path(bc) -> None:
    train, _ = bc
    x, y = train.tensors
    a, b = _model(), _model()
    Trainer(a, _cfg(epochs=2), spec=SPEC).fit(train, progress=False)
    Trainer(b, _cfg(epochs=2), spec=SPEC).fit(_ItemDataset(x, y), progress=False)
    assert _same(_weights(a), _weights(b))


def test_history_metrics_log_and_checkpoint(bc, tmp_path: Path) -> None:
    train, test = bc
    model = _model()
    trainer = Trainer(model, _cfg(epochs=4, schedule="cosine"), spec=SPEC)
    hist = trainer.fit(train, val_ds=test, out_dir=tmp_path, progress=False)
    assert [r.epoch for r in hist.records] == [1, 2, 3, 4]
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [json.loads(json.dumps(r.__dict__)) for r in hist.records]
    assert all(r.samples == len(train) and r.steps == 15 for r in hist.records)
    assert hist.records[-1].lr == pytest.approx(0.0, abs=1e-12)  # cosine to zero
    assert hist.records[-1].train_loss < hist.records[0].train_loss
    # reported validation metrics are those of the final weights
    ev = trainer.evaluate(test)
    assert ev["acc"] == pytest.approx(hist.records[-1].val_acc)
    assert ev["loss"] == pytest.approx(hist.records[-1].val_loss, rel=1e-5)
    loaded = load_model(tmp_path)
    assert torch.equal(loaded(test.tensors[0]), model.eval()(test.tensors[0]))
    assert History.from_dict(json.loads(json.dumps(hist.to_dict()))) == hist


def test_early_stopping_restores_best_weights(bc) -> None:
    train, _ = bc
    x, y = train.tensors
    noisy = TensorDataset(
        x, torch.randint(0, 2, (len(y),), generator=torch.Generator().manual_seed(0))
    )
    model = _model(hidden=[128, 128], dropout=0.0)  # memorises random labels: val loss goes up
    cfg = _cfg(epochs=30, lr=1e-2, schedule="none", val_fraction=0.3, patience=2)
    trainer = Trainer(model, cfg, spec=SPEC)
    hist = trainer.fit(noisy, progress=False)
    assert hist.stopped_early and len(hist.records) < 30
    best = min(hist.records, key=lambda r: r.val_loss)  # type: ignore[arg-type, return-value]
    assert hist.best_epoch == best.epoch
    assert len(hist.records) == best.epoch + 2
    _, val = trainer._split(noisy)
    assert trainer.evaluate(val)["loss"] == pytest.approx(best.val_loss, rel=1e-5)


def test_labels_outside_classes_are_refused(bc) -> None:
    x, y = bc[0].tensors
    with pytest.raises(DataError, match=r"0\.\.1"):
        Trainer(_model(), _cfg(), spec=SPEC).fit(TensorDataset(x, y + 1), progress=False)
    with pytest.raises(DataError, match="empty"):
        Trainer(_model(), _cfg(), spec=SPEC).fit(TensorDataset(x[:0], y[:0]), progress=False)


@pytest.mark.parametrize("every_steps", [None, 4])
def test_resume_after_crash_reaches_same_weights(bc, tmp_path: Path, every_steps) -> None:
    train, _ = bc
    x, y = train.tensors
    cfg = _cfg(epochs=3, checkpoint_every_steps=every_steps)
    ref = _model(dropout=0.3)
    ref_hist = Trainer(ref, cfg, spec=SPEC).fit(_ItemDataset(x, y), progress=False)

    crashing = _ItemDataset(x, y, fail_after=len(x) + 7 * 32 + 5)  # epoch 2, step 8
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(_model(dropout=0.3), cfg, spec=SPEC).fit(crashing, out_dir=tmp_path, progress=False)
    st = load_state(tmp_path)
    assert (st["epoch"], st["step_in_epoch"]) == ((1, 4) if every_steps else (1, 0))

    fresh = _model(seed=99, dropout=0.3)  # different init: everything must come from the state
    hist = Trainer(fresh, cfg, spec=SPEC).fit(
        _ItemDataset(x, y), out_dir=tmp_path, resume=True, progress=False
    )
    assert hist.resumed_from == (st["epoch"], st["step_in_epoch"])
    assert _same(_weights(fresh), _weights(ref))
    assert [r.train_loss for r in hist.records] == [r.train_loss for r in ref_hist.records]
    logged = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logged] == [1, 2, 3]


def test_resume_refuses_other_options_and_needs_out_dir(bc, tmp_path: Path) -> None:
    train, _ = bc
    Trainer(_model(), _cfg(epochs=1), spec=SPEC).fit(train, out_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="batch_size"):
        Trainer(_model(), _cfg(epochs=1, batch_size=16), spec=SPEC).fit(
            train, out_dir=tmp_path, resume=True, progress=False
        )
    with pytest.raises(ConfigError, match="out_dir"):
        Trainer(_model(), _cfg(), spec=SPEC).fit(train, resume=True, progress=False)


def test_state_format_round_trips_without_pickle(tmp_path: Path) -> None:
    p = nn.Parameter(torch.randn(3))
    opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.8, 0.95))
    p.grad = torch.ones(3)
    opt.step()
    state = {"opt": opt.state_dict(), "inf": float("inf"), "nested": {1: [(2, "a"), None, True]}}
    save_state(tmp_path, state, tag="a")
    save_state(tmp_path, state, tag="b")  # replaces the previous tensor file
    files = sorted(f.name for f in (tmp_path / "state").iterdir())
    assert files == ["state-b.safetensors", "state.json"]
    back = load_state(tmp_path)
    assert back["inf"] == float("inf") and back["nested"] == {1: [(2, "a"), None, True]}
    assert back["opt"]["param_groups"] == state["opt"]["param_groups"]
    for k, v in state["opt"]["state"][0].items():
        assert torch.equal(back["opt"]["state"][0][k], v)
    opt2 = torch.optim.AdamW([nn.Parameter(torch.zeros(3))], lr=1.0)
    opt2.load_state_dict(back["opt"])  # loadable as is
    # tampering with the tensors is refused
    f = tmp_path / "state" / "state-b.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0x10
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_state(tmp_path)
    with pytest.raises(TypeError, match="without pickle"):
        save_state(tmp_path, {"x": object()}, tag="c")


def test_adversarial_call_site(bc, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer calls ``adversarial_loss(model, x, y, config, bounds=, criterion=)`` and
    reports clean and adversarial accuracy from the returned logits."""
    calls: list[dict] = []

    def adversarial_loss(model, x, y, config, *, bounds, criterion):  # type: ignore[no-untyped-def]
        calls.append({"bounds": bounds, "smoothing": criterion.label_smoothing, "cfg": config})
        clean = model(x)
        x_adv = torch.full_like(x, bounds[0])  # every input replaced: a constant prediction
        adv = model(x_adv)
        return types.SimpleNamespace(
            loss=criterion(adv, y) + criterion(clean, y),
            clean_logits=clean.detach(),
            adv_logits=adv.detach(),
        )

    fake = types.ModuleType("xrobust.trainer.adversarial")
    fake.adversarial_loss = adversarial_loss  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "xrobust.trainer.adversarial", fake)
    train, _ = bc
    cfg = _cfg(epochs=2, adversarial="pgd", adv_eps=0.3, label_smoothing=0.1)
    hist = Trainer(_model(), cfg, spec=SPEC).fit(train, progress=False)
    assert len(calls) == 2 * 15
    assert calls[0]["bounds"] == (-10.0, 10.0) and calls[0]["smoothing"] == 0.1
    assert calls[0]["cfg"] is cfg
    y = train.tensors[1]
    majority = max((y == 0).float().mean().item(), (y == 1).float().mean().item())
    for r in hist.records:
        assert r.train_adv_acc is not None and r.train_adv_acc <= majority + 1e-9
        assert r.train_acc > r.train_adv_acc
    plain = Trainer(_model(), _cfg(epochs=1), spec=SPEC).fit(train, progress=False)
    assert plain.records[0].train_adv_acc is None


def test_real_adversarial_training_is_reported_and_deterministic(bc) -> None:
    pytest.importorskip("xrobust.trainer.adversarial")
    from dataclasses import replace

    train, _ = bc
    cfg = _cfg(epochs=2, adversarial="pgd", adv_eps=0.5, adv_steps=3)
    # the standardised features reach 11.96: bounds that hold them (the loaders' own
    # tabular bounds always do); bounds the data leaves are refused, not silently clipped
    spec = replace(SPEC, bounds=(-20.0, 20.0))
    runs = []
    for _ in range(2):
        m = _model()
        hist = Trainer(m, cfg, spec=spec).fit(train, progress=False)
        runs.append(_weights(m))
    assert _same(runs[0], runs[1])  # the attack's random starts follow the trainer's seed
    last = hist.records[-1]
    assert last.train_adv_acc is not None and 0.0 <= last.train_adv_acc < last.train_acc
    with pytest.raises(DataError, match=r"outside the attack's bounds \(-10.0, 10.0\)"):
        Trainer(_model(), cfg, spec=SPEC).fit(train, progress=False)


def test_workers_give_the_same_weights_and_fresh_runs_drop_old_state(bc, tmp_path: Path) -> None:
    train, _ = bc
    x, y = train.tensors
    a, b = _model(), _model()
    Trainer(a, _cfg(epochs=1), spec=SPEC).fit(_ItemDataset(x, y), out_dir=tmp_path, progress=False)
    assert (tmp_path / "state" / "state.json").exists()
    crashing = _ItemDataset(x, y, fail_after=10)
    with pytest.raises(RuntimeError, match="simulated crash"):  # a new run into the same folder
        Trainer(_model(), _cfg(epochs=1), spec=SPEC).fit(crashing, out_dir=tmp_path, progress=False)
    assert not (tmp_path / "state").exists()  # nothing stale left to "resume" from
    assert (tmp_path / "metrics.jsonl").read_text() == ""
    Trainer(b, _cfg(epochs=1, num_workers=2), spec=SPEC).fit(_ItemDataset(x, y), progress=False)
    assert _same(_weights(a), _weights(b))
