"""One model, three sources: audited as a torch module, as an ONNX file and through a
TF-Serving endpoint on 127.0.0.1, it gives the same clean accuracy, the same corruption
accuracies and the same occlusion maps; the endpoint audit's query counts equal the rows
the server received; an NHWC (TensorFlow-style) ONNX export audits correctly on NCHW data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")

from xrobust.audit import AuditConfig, audit
from xrobust.data import load_dataset
from xrobust.models import as_classifier, build_model, serving
from xrobust.models.export import export_onnx


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def model(digits):
    torch.manual_seed(0)
    m = build_model("small_cnn", digits.spec).eval()
    # a few steps of training so that the predictions are not all one class
    from xrobust.data import as_tensors

    x, y = as_tensors(digits.train, limit=512)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    m.train()
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return m.eval()


def _cfg() -> AuditConfig:
    return AuditConfig.from_dict(
        {
            "adversarial": {"n": 16, "norms": ["linf"], "minimal_perturbation": False},
            "corruption": {
                "n": 40,
                "severities": [2, 4],
                "corruptions": ["gaussian_noise", "contrast"],
            },
            "explanations": {
                "n": 2,
                "n_metrics": 2,
                "methods": ["occlusion"],
                "black_box_methods": [],
                "randomisation": False,
                "deletion_insertion": False,
                "stability": False,
            },
            "sanity": {"enabled": False},
        }
    )


def _summary(rep):
    cor = rep.sections["corruption"].data["corruptions"]
    occ = rep.sections["explanations"].data["methods"]["occlusion"]["clean"]
    return (
        rep.sections["clean"].data["accuracy"],
        {k: v["accuracy"] for k, v in cor.items()},
        np.array(occ),
    )


def test_torch_onnx_and_endpoint_audits_agree(digits, model, tmp_path) -> None:
    path = tmp_path / "m.onnx"
    export_onnx(model, path, tuple(digits.spec.input_shape))
    t_acc, t_cor, t_occ = _summary(audit(model, digits, _cfg()))

    onnx = as_classifier(path, digits.spec)
    o_acc, o_cor, o_occ = _summary(audit(onnx, digits, _cfg()))
    assert o_acc == t_acc and o_cor == t_cor
    assert np.allclose(o_occ, t_occ, atol=1e-4)

    with serving.serve(as_classifier(path, digits.spec)) as server:
        ep = as_classifier(server.url, digits.spec, batch_size=64)
        rep = audit(ep, digits, _cfg())
        e_acc, e_cor, e_occ = _summary(rep)
        assert e_acc == t_acc and e_cor == t_cor
        assert np.allclose(e_occ, t_occ, atol=1e-4)
        # every row the server received is in the report, per section and in total
        assert rep.queries["total"] == server.rows_received == ep.queries
        assert sum(rep.queries["per_section"].values()) == server.rows_received
    assert rep.model["classifier"]["source"] == "endpoint"
    assert "adversarial" in {
        k for k, s in rep.sections.items() if s.skipped_parts or s.status != "ok"
    }


class _ChannelsLast(nn.Module):
    """A TensorFlow-style model: takes NHWC input."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.permute(0, 3, 1, 2))


def test_nhwc_onnx_model_audits_on_nchw_data(digits, model, tmp_path) -> None:
    c, h, w = digits.spec.input_shape
    path = tmp_path / "nhwc.onnx"
    export_onnx(_ChannelsLast(model), path, (h, w, c))
    clf = as_classifier(path, digits.spec)  # the layout is read from the graph
    assert clf.describe().get("layout") == "NHWC"
    t_acc, t_cor, t_occ = _summary(audit(model, digits, _cfg()))
    n_acc, n_cor, n_occ = _summary(audit(clf, digits, _cfg()))
    assert n_acc == t_acc and n_cor == t_cor
    assert np.allclose(n_occ, t_occ, atol=1e-4)
