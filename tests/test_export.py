"""``export_onnx`` and ``xrobust export``: torch's exporter (dynamic batch), written
atomically, verified with onnxruntime, refused (and nothing left) above the tolerance.

One run directory (a small_cnn on the native 8x8 digits, a few seeded training steps) is
exported once through the CLI and shared; torch's default exporter takes 3-10 s a model on
this machine, so the tests export as few as they can.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from xrobust.cli import main
from xrobust.errors import ConfigError, ModelError
from xrobust.models.export import export_onnx

HAS_ONNX2TORCH = importlib.util.find_spec("onnx2torch") is not None


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from xrobust.data import as_tensors, load_dataset
    from xrobust.models import build_model, save_checkpoint

    ds = load_dataset("digits", size=8)
    torch.manual_seed(0)
    model = build_model("small_cnn", ds.spec)
    x, y = as_tensors(ds.train, limit=512)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for i in range(0, 512, 64):
        opt.zero_grad()
        F.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
        opt.step()
    model.eval()
    out = tmp_path_factory.mktemp("run")
    save_checkpoint(model, out, spec=ds.spec)
    return out


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory) -> tuple[Path, str]:
    """The run exported through the CLI (rc 0) with what it printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("exp") / "model.onnx"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["export", "--model", str(run_dir), "--format", "onnx", "--out", str(out)])
    assert rc == 0
    return out, buf.getvalue()


def test_cli_export_round_trip(exported, run_dir) -> None:
    from xrobust.data import as_tensors, load_dataset
    from xrobust.models import as_classifier, load_model

    path, printed = exported
    assert path.is_file()
    assert not [p for p in path.parent.iterdir() if p.name != "model.onnx"]  # no temp files
    assert "wrote" in printed and "dynamic batch" in printed and "64 rows of test data" in printed
    ds = load_dataset("digits", size=8)
    x, _ = as_tensors(ds.test, limit=37)
    model = load_model(run_dir)
    clf = as_classifier(path, spec=ds.spec, batch_size=16)  # 16 + 16 + 5: the batch is dynamic
    assert clf.layout == "NCHW" and clf.describe()["opset"] == 18 and clf.fixed_batch is None
    with torch.no_grad():
        ref = model(x)
    assert float((clf.scores(x) - ref).abs().max()) <= 1e-5


@pytest.mark.skipif(not HAS_ONNX2TORCH, reason="onnx2torch is not installed")
def test_exported_file_converts_back_with_onnx2torch(exported, run_dir) -> None:
    from xrobust.data import as_tensors, load_dataset
    from xrobust.models import as_classifier, load_model

    ds = load_dataset("digits", size=8)
    x, _ = as_tensors(ds.test, limit=32)
    white = as_classifier(exported[0], spec=ds.spec).to_torch(x)
    assert white.describe()["conversion_max_abs_diff"] <= 1e-5
    xa = x[:8].clone().requires_grad_(True)
    xb = x[:8].clone().requires_grad_(True)
    model = load_model(run_dir)
    F.cross_entropy(white.module(xa), torch.arange(8)).backward()
    F.cross_entropy(model(xb), torch.arange(8)).backward()
    assert float((xa.grad - xb.grad).abs().max()) <= 1e-6


def test_cli_failures_are_one_line(tmp_path, run_dir, capsys) -> None:
    cases = [
        (["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "m.onnx")], "nope"),
        (["--model", str(run_dir), "--format", "tflite", "--out", str(tmp_path / "m.onnx")],
         "unknown format 'tflite'; xrobust exports: onnx"),
        (["--model", str(run_dir), "--out", str(tmp_path)], "is a folder"),
        (["--model", str(run_dir), "--out", str(tmp_path / "m.txt")], "must end in .onnx"),
        (["--model", str(run_dir), "--out", str(tmp_path / "m.onnx"), "--tol", "0"], "--tol"),
    ]  # fmt: skip
    for argv, text in cases:
        rc = main(["export", *argv])
        err = capsys.readouterr().err
        assert rc == 2, argv
        assert text in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp"))


class Noisy(nn.Module):
    """Random output noise: onnxruntime's draw differs from torch's, so the check refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + torch.rand_like(self.fc(x))


def test_refused_export_leaves_no_file_and_keeps_the_old_one(tmp_path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous")
    with pytest.raises(ModelError, match=r"differs from torch by .*above tol=0\.0001: not written"):
        export_onnx(Noisy(), path, (4,))
    assert path.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_fixed_batch_export_and_module_untouched(tmp_path) -> None:
    from xrobust.models import as_classifier

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).train()
    flags = [p.requires_grad for p in net.parameters()]
    x = torch.rand(11, 5, generator=torch.Generator().manual_seed(1))
    res = export_onnx(net, tmp_path / "fixed.onnx", (5,), dynamic_batch=False, batch_size=4, check_x=x)
    assert net.training and [p.requires_grad for p in net.parameters()] == flags
    assert not res.dynamic_batch and res.batch_size == 4 and res.rows_checked == 11
    assert res.check_inputs == "given" and res.max_abs_diff <= 1e-5
    assert res.to_dict()["input_shape"] == [5]
    clf = as_classifier(res.path, input_shape=(5,), num_classes=3)
    assert clf.fixed_batch == 4
    with torch.no_grad():
        ref = net.eval()(x)
    assert float((clf.scores(x) - ref).abs().max()) <= 1e-5 and clf.calls == 3
    with pytest.raises(ConfigError, match="input_shape is needed"):
        export_onnx(net, tmp_path / "x.onnx")
    with pytest.raises(ConfigError, match="check_x has shape"):
        export_onnx(net, tmp_path / "x.onnx", (5,), check_x=np.zeros((2, 6), np.float32))
    with pytest.raises(ModelError, match="cannot export a int"):
        export_onnx(3, tmp_path / "x.onnx", (5,))
