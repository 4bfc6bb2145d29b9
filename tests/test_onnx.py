"""ONNX classifiers through the real onnxruntime, on models these tests export.

Tiny digits-shaped (1x8x8) CNNs are exported once per module: a dynamic-batch NCHW model,
an NHWC model (a torch module that permutes its channels-last input, as a TensorFlow export
takes it), a fixed-batch export, a Softmax model, a labels-output model and an ambiguous
3x3x3 one. Scores must equal torch's to 1e-5.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from xrobust.errors import ConfigError, DataError, ModelError, QueryBudgetExhausted
from xrobust.models import as_classifier
from xrobust.models.export import export_onnx
from xrobust.models.onnx import OnnxClassifier

HAS_ONNX2TORCH = importlib.util.find_spec("onnx2torch") is not None
DECL = {"input_shape": (1, 8, 8), "num_classes": 10, "bounds": (0.0, 1.0)}


class Net8(nn.Module):
    """A tiny CNN for 1x8x8 inputs in [0, 1] (random, seeded weights), returning logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc(z.flatten(1))


class ChannelsLast(nn.Module):
    """Takes NHWC, as a TensorFlow export does."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2))


class Softmaxed(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


class Labels(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).argmax(1)


class Cube(nn.Module):
    """3x3x3 inputs: NCHW and NHWC both fit, so the layout must be declared."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(27, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def x8() -> torch.Tensor:
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.images[:40], dtype=torch.float32).unsqueeze(1) / 16.0


@pytest.fixture(scope="module")
def net() -> Net8:
    torch.manual_seed(0)
    return Net8().eval()


def _export(module: nn.Module, path, shape: tuple[int, ...], *, batch: int | None = None) -> str:
    """A quick export (TorchScript exporter, opset 17: 0.1 s where torch's default exporter
    takes 3-10 s here; that one is tested by test_export.py), dynamic batch unless ``batch``."""
    import warnings

    x = torch.rand(batch or 2, *shape, generator=torch.Generator().manual_seed(0))
    dyn = None if batch else {"input": {0: "batch"}, "logits": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module, (x,), str(path), dynamo=False, opset_version=17,
                input_names=["input"], output_names=["logits"], dynamic_axes=dyn,
            )  # fmt: skip
        except Exception:  # a torch without the TorchScript exporter
            export_onnx(module, path, shape, dynamic_batch=batch is None, batch_size=batch)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory, net) -> dict[str, str]:
    d = tmp_path_factory.mktemp("onnx")
    out = {
        "nchw": _export(net, d / "nchw.onnx", (1, 8, 8)),
        "nhwc": _export(ChannelsLast(net), d / "nhwc.onnx", (8, 8, 1)),
        "fixed": _export(net, d / "fixed.onnx", (1, 8, 8), batch=4),
        "softmax": _export(Softmaxed(net), d / "softmax.onnx", (1, 8, 8)),
        "labels": _export(Labels(net), d / "labels.onnx", (1, 8, 8)),
    }
    torch.manual_seed(1)
    cube = Cube().eval()
    out["cube"] = _export(cube, d / "cube.onnx", (3, 3, 3))
    out["_cube_module"] = cube  # type: ignore[assignment]
    return out


# ---------------------------------------------------------------------------- scores
def test_nchw_scores_equal_torch(files, net, x8) -> None:
    from xrobust.data import load_dataset

    spec = load_dataset("digits", size=8).spec
    clf = as_classifier(files["nchw"], spec=spec)
    assert isinstance(clf, OnnxClassifier)
    assert clf.layout == "NCHW" and clf.output == "logits" and not clf.differentiable
    assert clf.input_shape == (1, 8, 8) and clf.num_classes == 10 and clf.bounds == (0.0, 1.0)
    s = clf.scores(x8)
    with torch.no_grad():
        ref = net(x8)
    assert s.shape == (40, 10) and s.dtype == torch.float32
    assert float((s - ref).abs().max()) <= 1e-5
    assert clf.queries == 40 and clf.calls == 1
    assert torch.equal(clf.predict(x8[:5]), ref[:5].argmax(1)) and clf.queries == 45
    # float64 in, float64 out (the graph still runs in float32)
    assert clf.scores(x8[:3].double()).dtype == torch.float64


def test_nhwc_model_on_nchw_data_equals_the_torch_original(files, net, x8) -> None:
    clf = as_classifier(files["nhwc"], **DECL)
    assert clf.layout == "NHWC" and clf.input_shape == (1, 8, 8)
    assert clf.describe()["graph_input_shape"] == ["?", 8, 8, 1]
    with torch.no_grad():
        ref = net(x8)
    assert float((clf.scores(x8) - ref).abs().max()) <= 1e-5


def test_layout_read_from_the_graph_without_a_declaration(files) -> None:
    nhwc = OnnxClassifier(files["nhwc"])
    assert nhwc.layout == "NHWC" and nhwc.input_shape == (1, 8, 8) and nhwc.num_classes == 10
    nchw = OnnxClassifier(files["nchw"])
    assert nchw.layout == "NCHW" and nchw.input_shape == (1, 8, 8)


def test_declared_layout_is_checked(files) -> None:
    with pytest.raises(DataError, match=r"\(\?, 8, 8, 1\)"):
        OnnxClassifier(files["nhwc"], layout="NCHW", **DECL)
    assert OnnxClassifier(files["nhwc"], layout="nhwc", **DECL).layout == "NHWC"
    with pytest.raises(ConfigError, match="layout must be"):
        OnnxClassifier(files["nhwc"], layout="CHW")


def test_ambiguous_layout_needs_a_declaration(files) -> None:
    cube = files["_cube_module"]
    with pytest.raises(ConfigError, match="declare layout='NCHW' or layout='NHWC'"):
        as_classifier(files["cube"], input_shape=(3, 3, 3))
    with pytest.raises(ConfigError, match="cannot be read from the graph"):
        as_classifier(files["cube"])
    x = torch.rand(6, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    clf = as_classifier(files["cube"], input_shape=(3, 3, 3), layout="NHWC")
    with torch.no_grad():  # NHWC declared: the classifier permutes NCHW data before asking
        ref = cube(x.permute(0, 2, 3, 1))
    assert clf.layout == "NHWC" and float((clf.scores(x) - ref).abs().max()) <= 1e-5
    clf = as_classifier(files["cube"], input_shape=(3, 3, 3), layout="NCHW")
    with torch.no_grad():
        assert float((clf.scores(x) - cube(x)).abs().max()) <= 1e-5


def test_shape_mismatch_names_both_shapes_before_any_query(files, x8) -> None:
    with pytest.raises(DataError) as err:
        as_classifier(files["nchw"], input_shape=(1, 28, 28), num_classes=10)
    msg = str(err.value)
    assert "(1, 28, 28)" in msg and "(?, 1, 8, 8)" in msg
    with pytest.raises(DataError, match=r"\(30,\).*\(\?, 1, 8, 8\)"):
        as_classifier(files["nchw"], input_shape=(30,))
    with pytest.raises(DataError, match=r"3 classes.*10 scores"):
        as_classifier(files["nchw"], input_shape=(1, 8, 8), num_classes=3)
    clf = as_classifier(files["nchw"], **DECL)
    with pytest.raises(DataError, match=r"\(N, 1, 8, 8\), got \(2, 8, 8, 1\)"):
        clf.scores(x8[:2].permute(0, 2, 3, 1))
    assert clf.queries == 0 and clf.calls == 0
    with pytest.raises(DataError, match="inputs of shape"):
        clf.check_data((1, 28, 28), 10)


# ---------------------------------------------------------------------------- batches
def test_fixed_batch_pads_the_last_chunk_and_drops_the_padding(files, net, x8) -> None:
    clf = as_classifier(files["fixed"], **DECL)
    assert clf.fixed_batch == 4 and clf.batch_size == 4
    with torch.no_grad():
        ref = net(x8[:10])
    s = clf.scores(x8[:10])
    assert s.shape == (10, 10) and float((s - ref).abs().max()) <= 1e-5
    assert clf.queries == 10 and clf.calls == 3  # padding rows are not counted
    other = as_classifier(files["fixed"], batch_size=7, **DECL)  # chunks of 7 -> pieces of 4
    assert float((other.scores(x8[:10]) - ref).abs().max()) <= 1e-5
    assert clf.scores(x8[:0]).shape == (0, 10)


def test_dynamic_batch_chunks_by_batch_size(files, net, x8) -> None:
    clf = as_classifier(files["nchw"], batch_size=16, **DECL)
    with torch.no_grad():
        ref = net(x8)
    assert float((clf.scores(x8) - ref).abs().max()) <= 1e-5 and clf.calls == 3


def test_query_budget_refuses_without_asking(files, x8) -> None:
    clf = as_classifier(files["nchw"], query_budget=10, **DECL)
    asked = []
    real = clf._run
    clf._run = lambda arr: (asked.append(len(arr)), real(arr))[1]  # type: ignore[method-assign]
    clf.scores(x8[:8])
    with pytest.raises(QueryBudgetExhausted, match="8 of 10 queries used"):
        clf.scores(x8[:5])
    assert asked == [8] and clf.queries == 8 and clf.calls == 1 and clf.remaining == 2
    clf.scores(x8[:2])
    assert clf.remaining == 0 and asked == [8, 2]
    assert clf.describe()["query_budget"] == 10


# ---------------------------------------------------------------------------- outputs
def test_softmax_output_is_inferred_as_probabilities(files, net, x8) -> None:
    clf = as_classifier(files["softmax"], **DECL)
    assert clf.output == "probabilities"
    with torch.no_grad():
        ref = torch.softmax(net(x8), 1)
    assert float((clf.scores(x8) - ref).abs().max()) <= 1e-5
    assert as_classifier(files["softmax"], output="logits", **DECL).output == "logits"


def test_integer_output_is_inferred_as_labels(files, net, x8) -> None:
    clf = as_classifier(files["labels"], **DECL)
    assert clf.output == "labels" and clf.describe()["output_name"]
    with torch.no_grad():
        want = net(x8).argmax(1)
    s = clf.scores(x8)
    assert torch.equal(s.argmax(1), want) and torch.equal(s.sum(1), torch.ones(40))
    with pytest.raises(ModelError, match="labels"):
        clf.to_torch(x8[:4])


def test_describe_names_file_opset_layout_and_io(files) -> None:
    d = as_classifier(files["nhwc"], **DECL).describe()
    assert d["source"] == "onnx" and d["file"].endswith("nhwc.onnx")
    assert isinstance(d["opset"], int) and d["opset"] >= 13
    assert d["layout"] == "NHWC" and d["input_name"] == "input" and d["output_name"] == "logits"
    assert d["output_names"] == ["logits"] and d["providers"] == ["CPUExecutionProvider"]
    assert d["opset"] == 17
    assert d["fixed_batch"] is None and d["input_type"] == "tensor(float)"
    import json

    json.dumps(d)


def test_bad_files_and_options_are_clear_errors(tmp_path, files) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        as_classifier(tmp_path / "missing.onnx", **DECL)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        as_classifier(junk, **DECL)
    with pytest.raises(ConfigError, match="no output 'nope'"):
        as_classifier(files["nchw"], output_name="nope", **DECL)
    with pytest.raises(ConfigError, match="not available here"):
        as_classifier(files["nchw"], providers=["TensorrtExecutionProvider"], **DECL)
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ConfigError, match="no CUDA provider"):
            as_classifier(files["nchw"], device="cuda", **DECL)
    assert as_classifier(files["nchw"], device="auto", **DECL).providers[-1] == "CPUExecutionProvider"
    with pytest.raises(ConfigError, match="amp"):
        as_classifier(files["nchw"], amp=True, **DECL)


# ---------------------------------------------------------------------------- white box
@pytest.mark.skipif(not HAS_ONNX2TORCH, reason="onnx2torch is not installed")
def test_to_torch_nhwc_is_differentiable_and_matches(files, net, x8) -> None:
    clf = as_classifier(files["nhwc"], **DECL)
    white = clf.to_torch(x8[:16])
    d = white.describe()
    assert white.differentiable and d["converted_from"] == "onnx" and d["layout"] == "NHWC"
    assert 0.0 <= d["conversion_max_abs_diff"] <= 1e-4 and d["conversion_rows"] == 16
    assert clf.queries == 16  # the check asked onnxruntime
    with torch.no_grad():
        ref = net(x8)
    assert float((white.scores(x8) - ref).abs().max()) <= 1e-5
    # input gradients equal the torch original's
    xa = x8[:8].clone().requires_grad_(True)
    xb = x8[:8].clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(white.module(xa), torch.arange(8)).backward()
    torch.nn.functional.cross_entropy(net(xb), torch.arange(8)).backward()
    assert float((xa.grad - xb.grad).abs().max()) <= 1e-6


@pytest.mark.skipif(not HAS_ONNX2TORCH, reason="onnx2torch is not installed")
def test_to_torch_gradient_attack_runs(files, net, x8) -> None:
    from xrobust.attacks import PGD

    white = as_classifier(files["nhwc"], **DECL).to_torch(x8[:8])
    y = net(x8).argmax(1).detach()
    res = PGD(white.module, eps=0.3, step_size=0.1, steps=5, bounds=(0.0, 1.0)).run(x8[:16], y[:16])
    assert res.x_adv.shape == (16, 1, 8, 8)
    assert float((res.x_adv - x8[:16]).abs().max()) <= 0.3 + 1e-6
    assert res.robust_accuracy < 1.0


@pytest.mark.skipif(not HAS_ONNX2TORCH, reason="onnx2torch is not installed")
def test_to_torch_refuses_above_tolerance(files, x8) -> None:
    clf = as_classifier(files["nchw"], **DECL)
    real = clf._run
    clf._run = lambda arr: real(arr) + 1e-2  # type: ignore[method-assign]
    with pytest.raises(ModelError, match=r"differs from onnxruntime by 0\.01.*tol=0\.0001"):
        clf.to_torch(x8[:4])


@pytest.mark.skipif(not HAS_ONNX2TORCH, reason="onnx2torch is not installed")
def test_onnx2torch_imports_without_torchvision() -> None:
    from xrobust.models.onnx import import_onnx2torch

    mod = import_onnx2torch()
    assert mod.__name__ == "onnx2torch"
    tv = sys.modules.get("torchvision")
    assert tv is None or not getattr(tv, "__xrobust_stub__", False)
    nms = sys.modules.get("onnx2torch.node_converters.nms")
    if nms is not None and getattr(getattr(nms, "torchvision", None), "__xrobust_stub__", False):
        with pytest.raises(ModelError, match="torchvision"):
            nms.torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)


def _fresh_onnx2torch(monkeypatch) -> None:
    """Forget onnx2torch (restored after the test), so that it is imported again."""
    for k in [k for k in sys.modules if k == "onnx2torch" or k.startswith("onnx2torch.")]:
        monkeypatch.delitem(sys.modules, k)


@pytest.mark.skipif(not HAS_ONNX2TORCH, reason="onnx2torch is not installed")
def test_onnx2torch_with_a_broken_torchvision(monkeypatch, files, net, x8) -> None:
    """A torchvision built for another torch fails on import; onnx2torch still imports,
    only its NMS / RoiAlign converters say what is missing."""
    import importlib.abc
    import importlib.machinery

    from xrobust.models.onnx import import_onnx2torch

    class Broken(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if name == "torchvision" or name.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(name, self)
            return None

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            raise RuntimeError("operator torchvision::nms does not exist")

    for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, k)
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    _fresh_onnx2torch(monkeypatch)
    mod = import_onnx2torch()
    assert "torchvision" not in sys.modules  # the stand-in is gone again
    nms = sys.modules["onnx2torch.node_converters.nms"]
    with pytest.raises(ModelError, match=r"torchvision::nms does not exist.*matches your torch"):
        nms.torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
    assert mod.convert  # every other converter works:
    white = as_classifier(files["nchw"], **DECL).to_torch(x8[:4])
    with torch.no_grad():
        assert float((white.scores(x8) - net(x8)).abs().max()) <= 1e-5


@pytest.mark.skipif(not HAS_ONNX2TORCH, reason="onnx2torch is not installed")
def test_onnx2torch_with_a_working_torchvision_imports_normally(monkeypatch) -> None:
    import types

    from xrobust.models.onnx import import_onnx2torch

    tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.nms = ops.roi_align = ops.box_convert = lambda *a, **k: "real"
    tv.ops, tv.__path__ = ops, []
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.ops", ops)
    _fresh_onnx2torch(monkeypatch)
    import_onnx2torch()
    assert sys.modules["onnx2torch.node_converters.nms"].torchvision is tv
    assert sys.modules["onnx2torch.node_converters.roialign"].roi_align() == "real"


def test_missing_onnx2torch_says_how_to_install(files, x8, monkeypatch) -> None:
    import xrobust.models.onnx as mod

    monkeypatch.delitem(sys.modules, "onnx2torch", raising=False)
    monkeypatch.setattr(mod, "_find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install onnx onnx2torch"):
        as_classifier(files["nchw"], **DECL).to_torch(x8[:4])


# ---------------------------------------------------------------------------- scikit-learn
@pytest.mark.parametrize("zipmap", [False, True])
def test_sklearn_export_picks_probabilities(tmp_path, zipmap) -> None:
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    lr = LogisticRegression(max_iter=500).fit(x, y)
    onx = to_onnx(lr, x[:1], options={id(lr): {"zipmap": zipmap}}, target_opset=15)
    path = tmp_path / "lr.onnx"
    path.write_bytes(onx.SerializeToString())
    clf = as_classifier(path, input_shape=(30,), num_classes=2)
    assert clf.output == "probabilities" and "prob" in clf.output_name
    s = clf.scores(torch.from_numpy(x[:50]))
    assert float(np.abs(s.numpy() - lr.predict_proba(x[:50])).max()) <= 1e-5
    assert clf.queries == 50
    with pytest.raises(DataError, match=r"\(5, 6\) but .*\(\?, 30\) \(it takes the inputs flattened"):
        as_classifier(path, input_shape=(5, 6))
