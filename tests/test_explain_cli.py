"""`xrobust explain` end to end through `xrobust.cli.main`, on checkpoints written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xrobust.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xrobust.data import load_dataset
    from xrobust.models import build_model, save_checkpoint

    spec = load_dataset("digits").spec
    torch.manual_seed(0)
    model = build_model("small_cnn", spec)
    out = tmp_path_factory.mktemp("runs") / "digits"
    save_checkpoint(model, out, spec=spec)
    return out


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xrobust.data import load_dataset
    from xrobust.models import build_model, save_checkpoint

    spec = load_dataset("breast_cancer").spec
    torch.manual_seed(0)
    model = build_model("mlp", spec)
    out = tmp_path_factory.mktemp("runs") / "cancer"
    save_checkpoint(model, out, spec=spec)
    return out


def test_single_method_figure_and_npz(image_run: Path, tmp_path: Path, capsys) -> None:
    fig, npz = tmp_path / "fig.png", tmp_path / "maps.npz"
    argv = [
        "explain",
        "--model",
        str(image_run),
        "--data",
        "digits",
        "--method",
        "integrated_gradients",
        "--samples",
        "0:4",
        "--out",
        str(fig),
        "--save-npz",
        str(npz),
        "--device",
        "cpu",
        "--param",
        "n_steps=16",
    ]
    assert main(argv) == 0
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    d = np.load(npz)
    assert d["attr_integrated_gradients"].shape == (4, 1, 28, 28)
    assert d["x"].shape == (4, 1, 28, 28) and d["indices"].tolist() == [0, 1, 2, 3]
    assert d["delta_integrated_gradients"].shape == (4,)
    # the arrays are the library's: recompute one with the Python API
    from xrobust.explain import explain
    from xrobust.models import load_model

    e = explain(
        load_model(image_run), torch.from_numpy(d["x"]), method="integrated_gradients", n_steps=16
    )
    np.testing.assert_allclose(d["attr_integrated_gradients"], e.numpy(), rtol=1e-5, atol=1e-7)
    assert "integrated_gradients: 4 samples" in capsys.readouterr().out


def test_compare_grid_with_labels_as_targets(image_run: Path, tmp_path: Path) -> None:
    fig, npz = tmp_path / "grid.svg", tmp_path / "grid.npz"
    argv = [
        "explain",
        "--model",
        str(image_run),
        "--data",
        "digits",
        "--compare",
        "saliency,gradcam,occlusion",
        "--samples",
        "3,5",
        "--target-class",
        "label",
        "--out",
        str(fig),
        "--save-npz",
        str(npz),
        "--normalise",
        "shared",
    ]
    assert main(argv) == 0
    assert b"<svg" in fig.read_bytes()[:500]
    d = np.load(npz)
    assert d["indices"].tolist() == [3, 5]
    for m in ("saliency", "gradcam", "occlusion"):
        assert d[f"attr_{m}"].shape == (2, 1, 28, 28)
        assert d[f"target_{m}"].tolist() == d["y"].tolist()


def test_tabular_bar_chart(tabular_run: Path, tmp_path: Path) -> None:
    fig, npz = tmp_path / "bars.png", tmp_path / "bars.npz"
    argv = [
        "explain",
        "--model",
        str(tabular_run),
        "--data",
        "breast_cancer",
        "--method",
        "kernel_shap",
        "--param",
        "n_samples=40",
        "--samples",
        "0:3",
        "--out",
        str(fig),
        "--save-npz",
        str(npz),
    ]
    assert main(argv) == 0
    d = np.load(npz)
    assert d["attr_kernel_shap"].shape == (3, 30) and len(d["feature_names"]) == 30
    assert fig.stat().st_size > 1000


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "integrated_gradient"], "Did you mean 'integrated_gradients'"),
        (["--compare", "saliency,gradcamm"], "Did you mean 'gradcam'"),
        (["--target-class", "10"], "outside the model's 10 classes"),
        (["--samples", "400:402"], "outside the test set"),
        (["--samples", "a:b"], "--samples"),
        (["--param", "nsteps=3"], "Did you mean 'n_steps'"),
        (["--out", "fig.txt"], "unknown figure format"),
    ],
)
def test_errors_are_one_line_exit_2(
    image_run: Path, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    argv = [
        "explain",
        "--model",
        str(image_run),
        "--data",
        "digits",
        "--samples",
        "0:2",
        "--out",
        str(tmp_path / "f.png"),
        *extra,
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_gradcam_on_a_model_without_convolutions(tabular_run: Path, tmp_path: Path, capsys) -> None:
    argv = [
        "explain",
        "--model",
        str(tabular_run),
        "--data",
        "breast_cancer",
        "--method",
        "gradcam",
        "--out",
        str(tmp_path / "f.png"),
    ]
    assert main(argv) == 2
    assert "needs a convolutional layer" in capsys.readouterr().err


def test_missing_run_and_nothing_to_write(tmp_path: Path, capsys) -> None:
    assert (
        main(
            [
                "explain",
                "--model",
                str(tmp_path / "nope"),
                "--data",
                "digits",
                "--out",
                str(tmp_path / "f.png"),
            ]
        )
        == 2
    )
    assert "error" in capsys.readouterr().err
    assert main(["explain", "--model", str(tmp_path), "--data", "digits"]) == 2
    assert "nothing to write" in capsys.readouterr().err
