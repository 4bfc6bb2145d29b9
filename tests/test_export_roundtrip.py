"""``xrobust export`` then ``--onnx`` answers as ``--model`` does (issue 18, items 4, 5, 9).

A tabular run's standardisation travels inside the exported graph (the file takes raw CSV
rows) and its schema in the file's metadata, so ``--onnx FILE --data file.csv`` reads the
table as ``--model`` does: same predictions, same attack and audit figures, for a CSV model
and an image model. A table is never standardised with its own statistics. Several ONNX
outputs, images of another size, an opset torch cannot write and a fixed batch that cannot
fit are refused with what to do, before any work.

Real files throughout: one CSV run (sklearn's breast cancer table, written here) and one
8x8 digits run, each trained and exported once through the CLI; other ONNX files are made
with torch's exporter or by editing those.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")

from table_support import cancer_rows, cancer_table, write_csv  # noqa: E402

from xrobust.cli import main  # noqa: E402
from xrobust.errors import ConfigError, DataError, ModelError  # noqa: E402

HAS_ONNX2TORCH = importlib.util.find_spec("onnx2torch") is not None


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    assert "Traceback" not in out.getvalue() + err.getvalue()
    return rc, out.getvalue(), err.getvalue()


def _attack(src: list[str], data: str, attack: str, eps: str, *extra: str) -> dict:
    budget = ["--queries", "150"] if attack == "square" else []
    rc, out, err = _cli(
        ["attack", *src, "--data", data, "--attack", attack, "--eps", eps, "--limit", "32",
         "--json", *budget, *extra]
    )  # fmt: skip
    assert rc == 0, err
    return json.loads(out)


FIGURES = ("n", "n_attacked", "clean_accuracy", "robust_accuracy", "success_rate", "bound")


def _same_figures(a: dict, b: dict) -> None:
    assert {k: a.get(k) for k in FIGURES} == {k: b.get(k) for k in FIGURES}


def _strip_metadata(src: Path, dst: Path) -> Path:
    m = onnx.load(str(src))
    del m.metadata_props[:]
    onnx.save(m, str(dst))
    return dst


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> dict:
    t = cancer_table(tmp_path_factory.mktemp("table"))
    folder, x, labels = t["dir"], t["x"], t["labels"]
    # a distribution shift inside the trained range: the larger tumours only. Standardised
    # with its own statistics this file means something else than with the model's.
    big = x[:, 0] > np.median(x[:, 0])
    shifted = write_csv(
        folder / "shifted.csv", [*t["names"], "diagnosis"], cancer_rows(x[big], labels[big])
    )
    run = t["run"]
    onnx_path = folder / "cancer.onnx"
    rc, out, err = _cli(["export", "--model", str(run), "--out", str(onnx_path)])
    assert rc == 0, err
    assert "takes raw feature rows" in out
    return {**t, "shifted": shifted, "onnx": onnx_path}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict:
    from xrobust.data import as_tensors, load_dataset

    folder = tmp_path_factory.mktemp("images")
    run = folder / "run"
    rc, _, err = _cli(
        ["train", "--data", "digits", "--size", "8", "--model", "small_cnn", "--epochs", "4",
         "--out", str(run), "--no-progress"]
    )  # fmt: skip
    assert rc == 0, err
    onnx_path = folder / "digits.onnx"
    rc, _, err = _cli(["export", "--model", str(run), "--out", str(onnx_path)])
    assert rc == 0, err
    npz = {}
    for size in (8, 16):
        ds = load_dataset("digits", size=size)
        x, y = as_tensors(ds.test, limit=120)
        npz[size] = folder / f"digits{size}.npz"
        np.savez(npz[size], x=x.numpy(), y=y.numpy())
    return {"run": run, "onnx": onnx_path, "npz": npz, "dir": folder}


# ---------------------------------------------------------------------------- the CSV model
def test_csv_export_takes_raw_rows_and_records_its_schema(table) -> None:
    import onnxruntime as ort

    from xrobust.data import as_tensors
    from xrobust.data.schema import load_for_model
    from xrobust.models import load_run
    from xrobust.models.onnx import read_xrobust_metadata

    loaded = load_run(table["run"])
    sess = ort.InferenceSession(str(table["onnx"]), providers=["CPUExecutionProvider"])
    raw = sess.run(None, {"input": table["x"].astype(np.float32)})[0]
    x, _ = as_tensors(load_for_model(loaded.spec, table["csv"]).train)  # standardised rows
    with torch.no_grad():
        ref = loaded.model(torch.as_tensor(
            (table["x"] - np.array(loaded.spec.extra["raw_mean"]))
            / np.array(loaded.spec.extra["raw_std"]), dtype=torch.float32,
        ))  # fmt: skip
    assert len(x) > 0
    assert (raw.argmax(1) == ref.argmax(1).numpy()).all()
    assert float(np.abs(raw - ref.numpy()).max()) < 1e-4
    # raw rows give the checkpoint's accuracy (the old export: 0.37 on raw rows)
    names = list(loaded.spec.class_names)
    y = np.array([names.index(lab) for lab in table["labels"]])
    assert (raw.argmax(1) == y).mean() > 0.9

    rec = json.loads(
        {p.key: p.value for p in onnx.load(str(table["onnx"])).metadata_props}["xrobust"]
    )
    assert rec["format"] == "xrobust-onnx" and rec["version"] == 1
    assert rec["feature_names"] == table["names"] and rec["class_names"] == ["benign", "malignant"]
    assert rec["preprocessing"]["embedded"] is True
    assert [s["op"] for s in rec["preprocessing"]["steps"]] == ["standardize"]
    assert rec["input"]["units"] == "raw" and rec["bounds"] == list(loaded.spec.bounds)
    assert len(rec["input_bounds"]) == 30
    checked = read_xrobust_metadata(table["onnx"])
    assert checked["_spec"].feature_names == loaded.spec.feature_names


def test_csv_round_trip_same_predictions_and_attack_figures(table) -> None:
    from xrobust.data import as_tensors
    from xrobust.data.schema import load_for_model
    from xrobust.models import as_classifier, load_run

    loaded = load_run(table["run"])
    bundle = load_for_model(loaded.spec, table["csv"])
    x, _ = as_tensors(bundle.test)
    clf = as_classifier(table["onnx"], spec=bundle.spec)
    with torch.no_grad():
        ref = loaded.model(x)
    assert clf.input_units == "model" and clf.describe()["preprocessing"]["embedded"]
    assert torch.equal(clf.predict(x), ref.argmax(1))
    assert float((clf.scores(x) - ref).abs().max()) < 1e-4

    csv_path = str(table["csv"])
    model, onnx_src = ["--model", str(table["run"])], ["--onnx", str(table["onnx"])]
    a = _attack(model, csv_path, "square", "0.3")
    b = _attack(onnx_src, csv_path, "square", "0.3")
    _same_figures(a, b)
    assert 0 < a["robust_accuracy"] < a["clean_accuracy"]  # the figures measure something
    if HAS_ONNX2TORCH:
        a = _attack(model, csv_path, "fgsm", "0.3")
        b = _attack([*onnx_src, "--white-box"], csv_path, "fgsm", "0.3")
        _same_figures(a, b)


def test_shifted_csv_is_read_with_the_models_statistics(table) -> None:
    from xrobust.data import as_tensors, load_dataset
    from xrobust.models import load_run

    shifted = str(table["shifted"])
    a = _attack(["--model", str(table["run"])], shifted, "square", "0.1")
    b = _attack(["--onnx", str(table["onnx"])], shifted, "square", "0.1")
    _same_figures(a, b)
    # what --onnx used to do (the file's own statistics) gives another accuracy, so the
    # equality above would catch it
    own = load_dataset(shifted, target="diagnosis")
    x, y = as_tensors(own.test)
    with torch.no_grad():
        acc_own = float((load_run(table["run"]).model(x).argmax(1) == y).float().mean())
    assert abs(acc_own - a["clean_accuracy"]) > 0.1


def test_csv_for_a_file_without_statistics_is_refused_with_the_fixes(table, tmp_path) -> None:
    foreign = _strip_metadata(table["onnx"], tmp_path / "foreign.onnx")  # takes raw rows
    csv_path = str(table["csv"])
    rc, _, err = _cli(["attack", "--onnx", str(foreign), "--data", csv_path,
                       "--attack", "square", "--eps", "0.1"])  # fmt: skip
    assert rc == 2 and "own statistics" in err
    assert "xrobust export" in err and "--train-data" in err and "--raw-features" in err
    # the graph standardises raw rows itself: --raw-features gives the run's clean accuracy
    a = _attack(["--model", str(table["run"])], csv_path, "square", "0.1")
    b = _attack(
        ["--onnx", str(foreign), "--raw-features"],
        csv_path,
        "square",
        "0.1",
        "--target",
        "diagnosis",
    )
    assert a["clean_accuracy"] == b["clean_accuracy"]
    # --train-data: standardised with the training table's statistics (runs; the graph
    # here would want raw rows, so only the plumbing is checked)
    c = _attack(
        ["--onnx", str(foreign), "--train-data", csv_path],
        csv_path,
        "square",
        "0.1",
        "--target",
        "diagnosis",
    )
    assert c["n"] == a["n"]
    rc, _, err = _cli(["attack", "--onnx", str(table["onnx"]), "--data", csv_path,
                       "--train-data", csv_path, "--attack", "square", "--eps", "0.1"])  # fmt: skip
    assert rc == 2 and "carries the preprocessing" in err


def test_python_api_refuses_a_table_standardised_with_its_own_statistics(table) -> None:
    from xrobust.data import load_dataset
    from xrobust.models import as_classifier

    own = load_dataset(str(table["shifted"]), target="diagnosis").spec
    clf = as_classifier(table["onnx"], spec=own)
    with pytest.raises(DataError, match="other statistics"):
        clf.check_data(tuple(own.input_shape), own.num_classes, "data", spec=own)


# ---------------------------------------------------------------------------- the image model
def test_image_round_trip_predictions_attacks_and_audit(images, tmp_path) -> None:
    from xrobust.data import as_tensors, load_dataset
    from xrobust.models import as_classifier, load_model

    ds = load_dataset("digits", size=8)
    x, _ = as_tensors(ds.test, limit=64)
    clf = as_classifier(images["onnx"], spec=ds.spec)
    with torch.no_grad():
        assert torch.equal(clf.predict(x), load_model(images["run"])(x).argmax(1))
    model, onnx_src = ["--model", str(images["run"])], ["--onnx", str(images["onnx"])]
    a = _attack(model, "digits", "square", "0.1")
    b = _attack(onnx_src, "digits", "square", "0.1")
    _same_figures(a, b)
    assert a["clean_accuracy"] > 0.5
    if not HAS_ONNX2TORCH:
        return
    a = _attack(model, "digits", "pgd", "0.05")
    b = _attack([*onnx_src, "--white-box"], "digits", "pgd", "0.05")
    _same_figures(a, b)
    cfg = tmp_path / "a.toml"
    cfg.write_text(
        "[adversarial]\nn = 24\nnorms = ['linf']\nattacks = ['fgsm']\nminimal_perturbation = false\n"
        "[adversarial.eps]\nlinf = [0.05]\n"
        "[corruption]\nenabled = false\n[explanations]\nenabled = false\n"
        "[sanity]\nenabled = false\n"
    )
    reports = []
    for name, src in (("m", model), ("o", [*onnx_src, "--white-box"])):
        rc, _, err = _cli(["audit", *src, "--data", "digits", "--config", str(cfg),
                           "--out", str(tmp_path / name), "--no-progress"])  # fmt: skip
        assert rc in (0, 1, 3), err
        reports.append((rc, json.loads((tmp_path / name / "report.json").read_text())))
    (rc_m, rep_m), (rc_o, rep_o) = reports
    assert rc_m == rc_o
    assert (
        rep_m["sections"]["clean"]["data"]["accuracy"]
        == rep_o["sections"]["clean"]["data"]["accuracy"]
    )
    assert json.dumps(rep_m["sections"]["adversarial"]["data"].get("results"), sort_keys=True) == (
        json.dumps(rep_o["sections"]["adversarial"]["data"].get("results"), sort_keys=True)
    )


def test_images_of_another_size_are_refused_unless_resize(images) -> None:
    d16 = str(images["npz"][16])
    for src in (["--model", str(images["run"])], ["--onnx", str(images["onnx"])]):
        rc, _, err = _cli(["attack", *src, "--data", d16, "--attack", "square", "--eps", "0.1"])
        assert rc == 2 and "(1, 16, 16)" in err and "(1, 8, 8)" in err and "--resize" in err
        with pytest.warns(UserWarning, match=r"\(1, 16, 16\) resized to .*\(1, 8, 8\)"):
            d = _attack(src, d16, "square", "0.1", "--resize")
        assert d["n"] == 24  # the npz's test split of 120 rows
    # a file without xrobust metadata: the graph's fixed size decides
    foreign = _strip_metadata(images["onnx"], images["dir"] / "foreign.onnx")
    rc, _, err = _cli(["attack", "--onnx", str(foreign), "--data", d16, "--attack", "square",
                       "--eps", "0.1"])  # fmt: skip
    assert rc == 2 and "(1, 16, 16)" in err and "--resize" in err
    with pytest.warns(UserWarning, match=r"\(1, 16, 16\) resized"):
        _attack(["--onnx", str(foreign)], d16, "square", "0.1", "--resize")
    rc, _, err = _cli(["attack", "--onnx", str(foreign), "--data", str(images["npz"][8]),
                       "--attack", "square", "--eps", "0.1", "--limit", "8"])  # fmt: skip
    assert rc == 0, err


# ---------------------------------------------------------------------------- several outputs
class TwoHeads(nn.Module):
    """The digits model's logits and their negation (a useless 'aux' head)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.net(x)
        return -z, z


def _export_two_heads(net: nn.Module, path: Path, names: list[str], example: torch.Tensor) -> Path:
    import warnings

    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net, (example,), str(path), input_names=["input"], output_names=names,
                dynamo=True, dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
            )  # fmt: skip
    finally:
        quiet.setLevel(level)
    return path


def _rename_outputs(src: Path, dst: Path, names: dict[str, str]) -> Path:
    m = onnx.load(str(src))
    for node in m.graph.node:
        for i, o in enumerate(node.output):
            if o in names:
                node.output[i] = names[o]
        for i, o in enumerate(node.input):
            if o in names:
                node.input[i] = names[o]
    for o in m.graph.output:
        if o.name in names:
            o.name = names[o.name]
    onnx.save(m, str(dst))
    return dst


def test_several_outputs_are_chosen_clearly_or_refused(images, tmp_path, caplog) -> None:
    from xrobust.data import as_tensors, load_dataset
    from xrobust.models import as_classifier, load_model

    ds = load_dataset("digits", size=8)
    x, _ = as_tensors(ds.test, limit=8)
    net = TwoHeads(load_model(images["run"])).eval()
    two = _export_two_heads(net, tmp_path / "two.onnx", ["aux_logits", "logits"], x[:2])
    d8 = str(images["npz"][8])
    ref = _attack(["--model", str(images["run"])], d8, "square", "0.1")
    with caplog.at_level(logging.WARNING, logger="xrobust.models.onnx"):
        got = _attack(["--onnx", str(two)], d8, "square", "0.1")
    assert got["clean_accuracy"] == ref["clean_accuracy"]  # 'logits', not the first output
    assert "reading 'logits'" in caplog.text and "named 'logits'" in caplog.text
    clf = as_classifier(two, spec=ds.spec)
    assert clf.output_name == "logits" and "named 'logits'" in clf.describe()["output_choice"]
    aux = _attack(["--onnx", str(two), "--output-name", "aux_logits"], d8, "square", "0.1")
    assert aux["clean_accuracy"] < 0.2

    anon = _rename_outputs(
        two, tmp_path / "anon.onnx", {"aux_logits": "head_a", "logits": "head_b"}
    )
    rc, _, err = _cli(["attack", "--onnx", str(anon), "--data", d8, "--attack", "square",
                       "--eps", "0.1"])  # fmt: skip
    assert rc == 2 and "--output-name" in err and "head_a" in err and "head_b" in err
    got = _attack(["--onnx", str(anon), "--output-name", "head_b"], d8, "square", "0.1")
    assert got["clean_accuracy"] == ref["clean_accuracy"]
    rc, _, err = _cli(["attack", "--onnx", str(anon), "--output-name", "nope", "--data", d8,
                       "--attack", "square", "--eps", "0.1"])  # fmt: skip
    assert rc == 2 and "no output 'nope'" in err
    rc, _, err = _cli(["attack", "--model", str(images["run"]), "--output-name", "logits",
                       "--attack", "square", "--eps", "0.1"])  # fmt: skip
    assert rc == 2 and "--output-name applies to --onnx" in err


class ScoresAndEmbedding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 5), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a(x), self.b(x)


def test_the_only_output_of_the_class_count_is_chosen(tmp_path) -> None:
    from xrobust.models import as_classifier

    torch.manual_seed(0)
    net = ScoresAndEmbedding().eval()
    path = _export_two_heads(net, tmp_path / "se.onnx", ["embedding", "head"], torch.rand(2, 4))
    clf = as_classifier(path, input_shape=(4,), num_classes=3)
    assert clf.output_name == "head" and "(N, 3)" in clf.describe()["output_choice"]
    with pytest.raises(ConfigError, match="--output-name"):
        as_classifier(path, input_shape=(4,))  # no class count: nothing tells them apart


# ---------------------------------------------------------------------------- opset and batch
def test_opset_is_honoured_or_refused_before_any_work(images, tmp_path, monkeypatch) -> None:
    from xrobust.models import export as export_mod

    out = tmp_path / "m.onnx"
    rc, _, err = _cli(["export", "--model", str(images["run"]), "--out", str(out), "--opset", "19"])
    assert rc == 0, err
    assert onnx.load(str(out)).opset_import[0].version == 19

    def no_work(*a, **k):
        raise AssertionError("the exporter ran")

    monkeypatch.setattr(torch.onnx, "export", no_work)
    for v in ("7", "17", "24", "99"):
        rc, _, err = _cli(["export", "--model", str(images["run"]), "--out",
                           str(tmp_path / "x.onnx"), "--opset", v])  # fmt: skip
        assert rc == 2 and f"opset {v} is not supported" in err and "18 to 23" in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()
    monkeypatch.undo()

    real = torch.onnx.export

    def writes_18(*a, **k):  # an exporter that quietly falls back to 18
        k["opset_version"] = 18
        return real(*a, **k)

    monkeypatch.setattr(torch.onnx, "export", writes_18)
    with pytest.raises(ModelError, match="wrote opset 18 where opset 20 was asked"):
        export_mod.export_onnx(str(images["run"]), tmp_path / "y.onnx", opset=20)
    assert not list(tmp_path.glob("*y.onnx*"))


def test_huge_fixed_batches_are_refused_before_allocating(images, tmp_path) -> None:
    from xrobust.models import as_classifier
    from xrobust.models.export import export_onnx

    t = time.perf_counter()
    rc, _, err = _cli(["export", "--model", str(images["run"]), "--out", str(tmp_path / "b.onnx"),
                       "--batch-size", "1000000000"])  # fmt: skip
    assert rc == 2 and "dynamic batch" in err and "1000000000" in err
    assert time.perf_counter() - t < 5 and not list(tmp_path.iterdir())
    wide = nn.Sequential(nn.Linear(64, 8192), nn.ReLU(), nn.Linear(8192, 10))
    with pytest.raises(ConfigError, match=r"at most \d+ rows, or leave the batch size out"):
        export_onnx(wide, tmp_path / "w.onnx", (64,), dynamic_batch=False, batch_size=60000)

    # an ONNX file whose fixed batch is 1e10: advice the user can act on
    m = onnx.load(str(images["onnx"]))
    dim = m.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_value = 10**10
    big = tmp_path / "big.onnx"
    onnx.save(m, str(big))
    with pytest.raises(ModelError, match="Re-export the model with a dynamic batch") as exc:
        as_classifier(big, input_shape=(1, 8, 8), num_classes=10)
    assert "smaller --batch-size" not in str(exc.value)
    rc, _, err = _cli(["attack", "--onnx", str(big), "--data", str(images["npz"][8]),
                       "--attack", "square", "--eps", "0.1"])  # fmt: skip
    assert rc == 2 and "dynamic batch" in err and "out of memory" not in err


def test_audit_toml_output_name_picks_the_output(images, tmp_path) -> None:
    """``output_name`` in the audit's TOML chooses among unnamed outputs, as --output-name
    does on the command line; without it the audit is refused naming the outputs."""
    from xrobust.data import as_tensors, load_dataset
    from xrobust.models import load_model

    ds = load_dataset("digits", size=8)
    x, _ = as_tensors(ds.test, limit=8)
    net = TwoHeads(load_model(images["run"])).eval()
    two = _export_two_heads(net, tmp_path / "two.onnx", ["aux_logits", "logits"], x[:2])
    anon = _rename_outputs(
        two, tmp_path / "anon.onnx", {"aux_logits": "head_a", "logits": "head_b"}
    )
    d8 = str(images["npz"][8])
    body = ("[adversarial]\nenabled = false\n[corruption]\nenabled = false\n"
            "[explanations]\nenabled = false\n[sanity]\nenabled = false\n"
            "[requirements]\nmin_clean_accuracy = 0.5\nsanity_checks_pass = false\n")  # fmt: skip
    cfg = tmp_path / "a.toml"
    cfg.write_text(body)
    argv = ["audit", "--onnx", str(anon), "--data", d8, "--config", str(cfg), "--no-progress"]
    rc, _, err = _cli([*argv, "--out", str(tmp_path / "r0")])
    assert rc == 2 and "--output-name" in err and "head_b" in err
    cfg.write_text('output_name = "head_b"\n' + body)
    rc, out, err = _cli([*argv, "--out", str(tmp_path / "r1")])
    assert rc == 0, out + err
    cfg.write_text('output_name = "head_a"\n' + body)
    rc, out, err = _cli([*argv, "--out", str(tmp_path / "r2")])
    assert (
        rc == 1 and "FAILED min_clean_accuracy" in out
    )  # the auxiliary head is not the classifier
    rc, _, err = _cli(["audit", "--model", str(images["run"]), "--config", str(cfg),
                       "--out", str(tmp_path / "r3"), "--no-progress"])  # fmt: skip
    assert rc == 2 and "applies to --onnx" in err
