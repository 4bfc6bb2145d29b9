"""Shared helpers of the CSV-model tests (tests/test_tabular_schema.py,
tests/test_export_roundtrip.py): scikit-learn's breast-cancer table written as a CSV with
named columns and text labels, and a small MLP trained on it through the CLI."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from xrobust.cli import main


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def cancer_rows(x: np.ndarray, labels: np.ndarray) -> list[list[object]]:
    return [[*map(float, r), lab] for r, lab in zip(x, labels)]


def cancer_table(folder: Path) -> dict[str, Any]:
    """``folder/cancer.csv`` (30 named features, a "diagnosis" column of text labels) and
    an MLP trained on it into ``folder/run`` (4 epochs)."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    names = [n.replace(" ", "_") for n in d.feature_names]
    labels = np.array(["malignant", "benign"])[d.target]
    path = write_csv(folder / "cancer.csv", [*names, "diagnosis"], cancer_rows(d.data, labels))
    run = folder / "run"
    rc = main(["train", "--data", str(path), "--target", "diagnosis", "--model", "mlp",
               "--epochs", "4", "--out", str(run), "--no-progress"])  # fmt: skip
    assert rc == 0, "training the breast-cancer MLP failed"
    return {"x": d.data, "labels": labels, "names": names, "csv": path, "run": run, "dir": folder}
