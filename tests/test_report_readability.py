"""The report reads like a finished product (issue 19 item 5): eps labels equal the values
that ran, options and timings as tables, the raw configuration folded away, full figure
titles, one column per distinct number, every FAIL and WARN explained and counted in the
headline, thousands separators, Markdown without HTML entities, no third-party log noise."""

from __future__ import annotations

import math

import torch

from xrobust.audit._runtime import default_eps
from xrobust.data.spec import DatasetSpec


def _spec(modality: str, shape: tuple[int, ...], bounds: tuple[float, float]) -> DatasetSpec:
    return DatasetSpec(
        name="t",
        modality=modality,
        input_shape=shape,
        num_classes=2,
        class_names=("a", "b"),
        bounds=bounds,
    )


def test_derived_eps_has_two_significant_figures() -> None:
    # the breast-cancer demo: standardised features with a median spread just under 1 gave
    # "eps=0.0999" and "l2 eps=0.342" before
    tab = _spec("tabular", (30,), (-4.0, 16.0))
    std = torch.full((30,), 0.9993)
    assert default_eps(tab, "linf", std) == [0.05, 0.1, 0.25, 0.5]
    img = _spec("image", (1, 28, 28), (0.0, 1.0))
    for spec, s in ((tab, std), (img, None)):
        for norm in ("linf", "l2"):
            for e in default_eps(spec, norm, s):
                assert float(f"{e:.2g}") == e and f"{e:g}" == f"{e:.2g}", (norm, e)
                assert e > 0 and math.isfinite(e)
