"""A tabular model's input schema travels with its checkpoint and is applied at evaluation.

The model is trained on a CSV; evaluating it on the same file with every value shifted,
with its columns reordered, renamed, missing or extra, or with unknown labels is refused or
handled as the README documents -- never silently re-standardised with the file's own
statistics. The CLI commands take ``--target COLUMN`` and default ``--data`` to the run's
recorded data.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from table_support import cancer_table, write_csv

from xrobust.cli import main
from xrobust.data import as_tensors
from xrobust.data.schema import load_for_model
from xrobust.errors import DataError
from xrobust.models import load_run


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> dict:
    return cancer_table(tmp_path_factory.mktemp("schema"))


def _accuracy(run: Path, data: str | Path | None) -> float:
    loaded = load_run(run)
    x, y = as_tensors(load_for_model(loaded.spec, data).test)
    with torch.no_grad():
        return float((loaded.model(x).argmax(1) == y).float().mean())


def test_same_file_reproduces_the_training_test_accuracy(table) -> None:
    meta = json.loads((table["run"] / "model.json").read_text())
    acc = _accuracy(table["run"], table["csv"])
    assert acc == pytest.approx(meta["metrics"]["test_acc"], abs=1e-6)  # float32 mean
    assert _accuracy(table["run"], None) == acc  # --data defaults to the recorded file


def test_shifted_values_are_refused(table) -> None:
    rows = [[*(10 * v + 100 for v in x), lab] for x, lab in zip(table["x"], table["labels"])]
    shifted = write_csv(table["dir"] / "shifted.csv", [*table["names"], "diagnosis"], rows)
    with pytest.raises(DataError, match=r"outside the range the model was trained on"):
        _accuracy(table["run"], shifted)


def test_reordered_columns_are_remapped_and_logged(table, caplog) -> None:
    order = list(reversed(range(len(table["names"]))))
    header = ["diagnosis", *(table["names"][j] for j in order)]
    rows = [[lab, *(x[j] for j in order)] for x, lab in zip(table["x"], table["labels"])]
    path = write_csv(table["dir"] / "reordered.csv", header, rows)
    with caplog.at_level(logging.WARNING, logger="xrobust"):
        acc = _accuracy(table["run"], path)
    assert acc == _accuracy(table["run"], table["csv"])
    assert any("re-mapped by name to the model's order" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("rename", r"missing column\(s\) \['mean_radius'\]; unexpected column\(s\) \['radius'\] \(renamed"),
        ("drop", r"missing column\(s\) \['worst_fractal_dimension'\]"),
        ("extra", r"unexpected column\(s\) \['site'\]"),
        ("label", r"label\(s\) \['unknown'\] that the model does not know"),
    ],
)  # fmt: skip
def test_schema_mismatches_are_refused(table, change: str, match: str) -> None:
    header = [*table["names"], "diagnosis"]
    rows = [[*map(float, x), lab] for x, lab in zip(table["x"], table["labels"])]
    if change == "rename":
        header[0] = "radius"
    elif change == "drop":
        header = header[:-2] + header[-1:]
        rows = [r[:-2] + r[-1:] for r in rows]
    elif change == "extra":
        header.insert(3, "site")
        rows = [[*r[:3], 7, *r[3:]] for r in rows]
    else:
        rows[5][-1] = "unknown"
    path = write_csv(table["dir"] / f"{change}.csv", header, rows)
    with pytest.raises(DataError, match=match):
        _accuracy(table["run"], path)


def test_cli_commands_take_target_and_default_data(table, tmp_path, capsys) -> None:
    run = str(table["run"])
    assert main(["attack", "--model", run, "--eps", "0.1", "--steps", "3", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["n"] == 114  # the recorded file's test split
    rc = main(
        ["attack", "--model", run, "--data", str(table["csv"]), "--target", "diagnosis",
         "--eps", "0.1", "--steps", "3", "--limit", "16", "--target-class", "1"]
    )  # fmt: skip
    assert rc == 0
    capsys.readouterr()
    out = tmp_path / "bars.png"
    rc = main(["explain", "--model", run, "--method", "saliency", "--samples", "0:4",
               "--out", str(out)])  # fmt: skip
    assert rc == 0 and out.stat().st_size > 0
    rc = main(["audit", "--model", run, "--out", str(tmp_path / "rep"), "--no-progress",
               "--n", "16", "--attacks", "fgsm", "--norms", "linf", "--skip",
               "corruption,explanations,sanity", "--target", "diagnosis",
               "--min-clean-accuracy", "0.5", "--no-sanity-requirement"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    meta = json.loads((table["run"] / "model.json").read_text())
    clean = rep["sections"]["clean"]["data"]
    assert clean["n"] == 114
    assert clean["accuracy"] == pytest.approx(meta["metrics"]["test_acc"], abs=1e-6)
    capsys.readouterr()
    # a wrong column names the columns; the old integer --target points to --target-class
    assert main(["attack", "--model", run, "--target", "species", "--eps", "0.1"]) == 2
    assert "no column named 'species'" in capsys.readouterr().err
    assert main(["attack", "--model", run, "--data", "breast_cancer", "--target", "1",
                 "--eps", "0.1"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "use --target-class 1" in err and len(err.splitlines()) == 1


def test_library_audit_and_gate_read_a_csv_through_the_models_schema(table) -> None:
    """``audit(load_model(run), "new.csv")`` uses the stored schema, not the file's own stats."""
    from xrobust.audit import AuditConfig, audit
    from xrobust.models import load_model
    from xrobust.testing import assert_accuracy

    model = load_model(table["run"])
    rows = [[*(10 * v + 100 for v in x), lab] for x, lab in zip(table["x"], table["labels"])]
    shifted = write_csv(table["dir"] / "shifted_lib.csv", [*table["names"], "diagnosis"], rows)
    cfg = AuditConfig.from_dict({"adversarial": {"enabled": False}, "corruption": {"enabled": False},
                                 "explanations": {"enabled": False}, "sanity": {"enabled": False}})  # fmt: skip
    with pytest.raises(DataError, match="outside the range the model was trained on"):
        audit(model, str(shifted), cfg)
    with pytest.raises(DataError, match="outside the range the model was trained on"):
        assert_accuracy(model, str(shifted), 0.5)
    rep = audit(model, str(table["csv"]), cfg)
    meta = json.loads((table["run"] / "model.json").read_text())
    assert rep.sections["clean"].data["accuracy"] == pytest.approx(
        meta["metrics"]["test_acc"], abs=1e-6
    )


def test_default_data_of_a_file_model_never_falls_back_to_a_builtin(tmp_path) -> None:
    """A model trained on ``digits.csv`` whose file is gone must not evaluate on built-in digits."""
    from xrobust.data import load_dataset
    from xrobust.data.schema import default_source
    from xrobust.errors import ConfigError

    rows = [[float(i), float(i % 3), "ab"[i % 2]] for i in range(40)]
    f = write_csv(tmp_path / "digits.csv", ["u", "v", "label"], rows)
    spec = load_dataset(str(f)).spec
    assert spec.name == "digits" and default_source(spec) == str(f)
    f.unlink()
    with pytest.raises(ConfigError, match="which is not there"):
        default_source(spec)
