"""Figures render, are centred at zero, honour per-map vs shared scaling, never touch pyplot."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from xrobust.errors import DataError
from xrobust.explain import explain, global_importance
from xrobust.explain.figures import (
    adversarial_figure,
    compare_methods_figure,
    curves_figure,
    heatmap_array,
    heatmap_figure,
    tabular_bar_figure,
)
from xrobust.explain.metrics import deletion_curve, insertion_curve

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    return data


def _overlays(fig: Figure) -> list:
    """The attribution layers (diverging colormap) of every axes."""
    return [im for ax in fig.axes for im in ax.get_images() if im.get_cmap().name == "RdBu_r"]


def test_heatmap_centred_per_map_and_shared() -> None:
    x = torch.rand(2, 1, 8, 8)
    a = torch.randn(2, 1, 8, 8)
    a[1] *= 10  # second map ten times stronger
    per = heatmap_figure(x, a, normalise="per_map")
    shared = heatmap_figure(x, a, normalise="shared")
    for fig, same in ((per, False), (shared, True)):
        ims = _overlays(fig)
        assert len(ims) == 2
        for im in ims:
            norm = im.norm
            assert norm.vcenter == 0 and norm.vmin == -norm.vmax  # centred at zero
        vmax = [im.norm.vmax for im in ims]
        assert (vmax[0] == vmax[1]) is same
        _png(fig)
    expected = np.abs(a.numpy().sum(1)).max(axis=(1, 2))
    assert [im.norm.vmax for im in _overlays(per)] == pytest.approx(expected.tolist())


def test_heatmap_array_sums_channels_and_rejects_tabular() -> None:
    a = torch.ones(2, 3, 4, 4)
    assert heatmap_array(a).shape == (2, 4, 4) and heatmap_array(a).max() == 3
    with pytest.raises(DataError, match="tabular_bar_figure"):
        heatmap_array(torch.ones(2, 5))


def test_method_grid_adversarial_and_curves(digits_cnn, digits28) -> None:
    x = digits28["x_test"][:3]
    exps = {m: explain(digits_cnn, x, method=m) for m in ("saliency", "gradcam")}
    grid = compare_methods_figure(x, exps)
    assert len(grid.axes) == 3 * 3
    assert [ax.get_title() for ax in grid.axes[:3]] == ["input", "saliency", "gradcam"]
    _png(grid)
    x_adv = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    adv = adversarial_figure(
        x, x_adv, exps["saliency"], explain(digits_cnn, x_adv, exps["saliency"].target, "saliency")
    )
    assert len(adv.axes) == 3 * 5
    _png(adv)
    e = explain(digits_cnn, x, method="integrated_gradients", n_steps=16)
    curves = curves_figure(
        [deletion_curve(digits_cnn, x, e, steps=8), insertion_curve(digits_cnn, x, e, steps=8)]
    )
    assert [ax.get_title() for ax in curves.axes] == ["deletion", "insertion"]
    assert "integrated_gradients (AUC" in curves.axes[0].get_legend().get_texts()[0].get_text()
    _png(curves)


def test_tabular_bars(tabular_mlp, breast_cancer) -> None:
    x = breast_cancer["x_test"][:20]
    names = list(breast_cancer["feature_names"])
    e = explain(tabular_mlp, x, method="integrated_gradients", feature_names=names)
    gi = global_importance(e)
    assert gi.feature_names == names and gi.n == 20 and gi.method == "integrated_gradients"
    np.testing.assert_allclose(gi.mean_abs, e.numpy().__abs__().mean(0), rtol=1e-6)
    np.testing.assert_allclose(gi.std_abs, np.abs(e.numpy()).std(0), rtol=1e-5, atol=1e-7)
    assert gi.ranking()[0] == names[int(np.argmax(gi.mean_abs))]
    fig = tabular_bar_figure(gi, top_k=5)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == gi.ranking()[:5]  # ticks listed top down: most important first
    _png(fig)
    _png(tabular_bar_figure(e.numpy()[0], names, top_k=8))


def test_library_never_uses_pyplot() -> None:
    from pathlib import Path

    import xrobust.explain.figures as figs

    src = Path(figs.__file__).read_text().replace("never calls ``plt.show()``", "")
    assert "pyplot" not in src and "plt." not in src
