"""Every bad input the reliability review found, run through the CLI.

Each case must end with the documented exit status (2 for a usage or data error), one
line on stderr naming what was wrong, and no traceback -- and where the error concerns an
option, before any work is done.
"""

from __future__ import annotations

import io
import json
import os
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xrobust.cli import main
from xrobust.data import _base


@pytest.fixture(scope="module")
def run8(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run8") / "run"
    argv = ["train", "--data", "digits", "--size", "8", "--model", "mlp", "--epochs", "1",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    return out


def _npz_with_header(path: Path, shape: tuple[int, ...], dtype: str = "<f4") -> Path:
    """An .npz whose x.npy declares ``shape`` but holds almost no data."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", head.getvalue() + b"\0" * 64)
        buf = io.BytesIO()
        np.save(buf, np.zeros(4, dtype=np.int64))
        zf.writestr("y.npy", buf.getvalue())
    return path


def _zip_bomb(path: Path, inflated: int) -> Path:
    """An .npz whose x.npy honestly declares and holds ``inflated`` bytes of zeros, deflated."""
    n = inflated // 4
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": "<f4", "fortran_order": False, "shape": (n // 64, 64)}
    )
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as fh:
            fh.write(head.getvalue())
            block = b"\0" * (1 << 20)
            for _ in range(inflated // len(block)):
                fh.write(block)
        buf = io.BytesIO()
        np.save(buf, np.arange(n // 64) % 2)
        zf.writestr("y.npy", buf.getvalue())
    return path


def _check(capsys, rc: int, expected_rc: int, needle: str) -> str:
    err = capsys.readouterr().err.strip()
    info = ("WARNING", "  warnings.warn", "xrobust audit: demo model for")
    lines = [s for s in err.splitlines() if not s.startswith(info)]
    assert rc == expected_rc, err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert needle in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------- tracebacks before


def test_npz_declaring_a_huge_array(tmp_path, capsys) -> None:
    f = _npz_with_header(tmp_path / "huge.npz", (10**6, 10**6))
    rc = main(["train", "--data", str(f), "--model", "mlp", "--out", str(tmp_path / "r")])
    _check(capsys, rc, 2, "GiB")


def test_label_of_a_billion(tmp_path, capsys) -> None:
    f = tmp_path / "labels.npz"
    np.savez(f, x=np.zeros((40, 3), np.float32), y=np.r_[np.zeros(39, np.int64), 10**9])
    rc = main(["train", "--data", str(f), "--model", "mlp", "--out", str(tmp_path / "r")])
    _check(capsys, rc, 2, "at most 100000 classes")


def test_zip_bomb_is_refused_before_inflating(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(_base, "MAX_DATA_BYTES", 32 << 20)  # the same check as 4 GiB, smaller
    f = _zip_bomb(tmp_path / "bomb.npz", 64 << 20)
    assert f.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        rc = main(["train", "--data", str(f), "--model", "mlp", "--out", str(tmp_path / "r")])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _check(capsys, rc, 2, "GiB")
    assert peak < 16 << 20, f"{peak / 2**20:.1f} MiB allocated while refusing the archive"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--model", "small_cnn", "--size", "5000"], "--size: expected an integer from 1 to 1024"),
        (["--model", "mlp", "--model-arg", "hidden=[100000,100000]"], "parameters"),
        (["--model", "small_cnn", "--model-arg", "width=32"], "no option(s) 'width'"),
        (["--model", "mlp", "--lr", "-1"], "--lr: expected a number > 0"),
        (["--model", "mlp", "--epochs", "0"], "--epochs: expected an integer from 1"),
        (["--model", "small_cnn", "--amp"], "--amp needs a CUDA device"),
        (["--model", "mlp", "--label-smoothing", "1.5"], "--label-smoothing must be in [0, 1)"),
        (["--model", "mlp", "--target", "species"], "--target"),
    ],
)
def test_train_flag_values(tmp_path, capsys, extra, needle) -> None:
    rc = main(["train", "--data", "digits", *extra, "--out", str(tmp_path / "r")])
    _check(capsys, rc, 2, needle)
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_diverged_training_is_a_clear_error(tmp_path, capsys) -> None:
    out = tmp_path / "r"
    rc = main(["train", "--data", "digits", "--size", "8", "--model", "mlp", "--lr", "1e6",
               "--epochs", "2", "--out", str(out), "--no-progress"])  # fmt: skip
    _check(capsys, rc, 2, "training diverged: the loss became NaN or infinite at epoch 1, step")
    text = (out / "metrics.jsonl").read_text()
    assert all(json.loads(s) for s in text.splitlines())  # valid JSON lines (maybe none)
    assert not (out / "model.json").exists()


def test_non_utf8_toml(run8, tmp_path, capsys) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_bytes(b"seed = 1\n# caf\xe9\n")
    rc = main(["audit", "--model", str(run8), "--config", str(cfg), "--out", str(tmp_path / "a")])
    _check(capsys, rc, 2, "not UTF-8 text")


@pytest.mark.parametrize(
    ("param", "needle"),
    [
        ("n_steps=-3", "'n_steps' must be an integer from 1 to"),
        ("n_steps=abc", "'n_steps' must be int"),
        ("n_steps=1e9", "'n_steps' must be int"),
        ("internal_batch_size=0", "'internal_batch_size' must be an integer from 1"),
    ],
)
def test_explain_params_are_validated_before_captum(run8, tmp_path, capsys, param, needle):
    rc = main(["explain", "--model", str(run8), "--param", param, "--samples", "0:2",
               "--out", str(tmp_path / "f.png")])  # fmt: skip
    _check(capsys, rc, 2, needle)


@pytest.mark.parametrize("command", ["attack", "explain", "audit", "report", "train"])
def test_out_under_a_file_is_refused_before_any_work(tmp_path, capsys, command) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    missing_model = str(tmp_path / "no-such-run")  # the --out check must come first
    argv = {
        "attack": ["attack", "--model", missing_model, "--eps", "0.1",
                   "--out", str(blocker / "adv.npz")],
        "explain": ["explain", "--model", missing_model, "--out", str(blocker / "f.png")],
        "audit": ["audit", "--model", missing_model, "--out", str(blocker / "rep")],
        "report": ["report", str(tmp_path / "no-report.json"), "--out", str(blocker / "r.html")],
        "train": ["train", "--data", str(tmp_path / "no-data.npz"), "--model", "mlp",
                  "--out", str(blocker / "run")],
    }[command]  # fmt: skip
    rc = main(argv)
    line = _check(capsys, rc, 2, "is a file")
    assert "no-such-run" not in line and "no-data" not in line and "no-report" not in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_not_writable(tmp_path, capsys) -> None:  # pragma: no cover - not run as root
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    rc = main(["audit", "--model", str(tmp_path / "x"), "--out", str(ro / "rep")])
    _check(capsys, rc, 2, "not writable")


def test_unwritable_demo_cache(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("XROBUST_CACHE", str(tmp_path / "file" / "cache"))
    rc = main(["audit", "--demo", "--out", str(tmp_path / "rep"), "--no-progress"])
    _check(capsys, rc, 2, "set XROBUST_CACHE to a writable folder")


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d["sections"]["clean"].update(data="oops"), "report"),
        (lambda d: d["sections"].update(clean=[1, 2]), "report"),
        (lambda d: d.update(requirements={"a": 1}), "report"),
    ],
)
def test_report_with_wrong_section_types(run8, tmp_path, capsys, edit, needle) -> None:
    rep = tmp_path / "rep"
    rc = main(["audit", "--model", str(run8), "--out", str(rep), "--no-progress", "--n", "8",
               "--attacks", "fgsm", "--norms", "linf", "--skip",
               "corruption,explanations,sanity"])  # fmt: skip
    assert rc == 3  # nothing was required: no verdict
    capsys.readouterr()
    d = json.loads((rep / "report.json").read_text())
    edit(d)
    (rep / "report.json").write_text(json.dumps(d))
    rc = main(["report", str(rep / "report.json"), "--format", "md"])
    _check(capsys, rc, 2, needle)


# --------------------------------------------------------------------- silently accepted


def test_skip_unknown_section(run8, tmp_path, capsys) -> None:
    rc = main(["audit", "--model", str(run8), "--skip", "bogus", "--out", str(tmp_path / "a")])
    _check(capsys, rc, 2, "--skip: unknown section 'bogus'")


def test_requirement_on_an_attack_not_run_fails_up_front(tmp_path, capsys) -> None:
    # the model does not exist: the requirement must be refused before it is looked at
    rc = main(["audit", "--model", str(tmp_path / "nope"), "--attacks", "fgsm",
               "--require", "apgd:linf:0.1:0.5", "--out", str(tmp_path / "a")])  # fmt: skip
    _check(capsys, rc, 2, "attack 'apgd' is not among the attacks this audit runs")


def test_attack_amp_on_cpu(run8, capsys) -> None:
    rc = main(["attack", "--model", str(run8), "--eps", "0.1", "--amp", "--device", "cpu"])
    _check(capsys, rc, 2, "--amp needs a CUDA device")


def test_explain_samples_out_of_range(run8, tmp_path, capsys) -> None:
    rc = main(["explain", "--model", str(run8), "--samples", "0:1000",
               "--out", str(tmp_path / "f.png")])  # fmt: skip
    _check(capsys, rc, 2, "the test set has 359 samples")
    rc = main(["explain", "--model", str(run8), "--samples", "0:40",
               "--out", str(tmp_path / "f.png")])  # fmt: skip
    _check(capsys, rc, 2, "a figure draws at most 16")


def test_attack_steps_huge(run8, capsys) -> None:
    rc = main(["attack", "--model", str(run8), "--eps", "0.1", "--steps", "10000000"])
    _check(capsys, rc, 2, "--steps: expected an integer from 1 to 100000")


def test_tiny_dataset_warns_and_reports_its_size(tmp_path, capsys) -> None:
    """Documented: exit 0, a warning that the accuracy is noise, and the test-set size."""
    f = tmp_path / "three.npz"
    np.savez(f, x=np.eye(3, dtype=np.float32), y=np.array([0, 1, 1]))
    with pytest.warns(UserWarning, match="only 2 training and 1 test examples"):
        rc = main(["train", "--data", str(f), "--model", "mlp", "--epochs", "1",
                   "--out", str(tmp_path / "r"), "--no-progress"])  # fmt: skip
    assert rc == 0
    assert "on 1 test examples" in capsys.readouterr().out


def test_old_integer_target_points_to_target_class(run8, capsys) -> None:
    rc = main(["attack", "--model", str(run8), "--target", "3", "--eps", "0.1"])
    _check(capsys, rc, 2, "use --target-class 3")
    rc = main(["explain", "--model", str(run8), "--target", "label", "--out", "x.png"])
    _check(capsys, rc, 2, "use --target-class label")


def test_incomplete_run_needs_allow_incomplete(run8, tmp_path, capsys) -> None:
    import shutil

    from xrobust.models.checkpoint import _seal

    run = tmp_path / "run"
    shutil.copytree(run8, run)
    meta = json.loads((run / "model.json").read_text())
    meta["training"].update(completed=False, epoch=1, epochs=5)
    (run / "model.json").write_text(json.dumps(_seal(meta)))
    rc = main(["attack", "--model", str(run), "--eps", "0.05", "--steps", "2", "--limit", "8"])
    _check(capsys, rc, 2, "did not finish (saved after epoch 1 of 5)")
    with pytest.warns(UserWarning, match="did not finish"):
        rc = main(["attack", "--model", str(run), "--eps", "0.05", "--steps", "2",
                   "--limit", "8", "--allow-incomplete"])  # fmt: skip
    assert rc == 0


def test_help_texts(capsys) -> None:
    for cmd in ("train", "attack", "explain", "audit", "report"):
        assert main([cmd, "--help"]) == 0
        text = capsys.readouterr().out
        assert "(default: None)" not in text, cmd
        assert "width=32" not in text


def test_cli_sets_passive_openmp_waiting_before_torch(tmp_path) -> None:
    """Unless the user chose, `xrobust` sets OMP_WAIT_POLICY=PASSIVE before importing torch."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from xrobust.cli import main\n"
        "rc = main(['list', 'models']) if len(sys.argv) < 2 else 0\n"
        "print('POLICY', os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "POLICY PASSIVE" in r.stdout, r.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "POLICY ACTIVE" in r.stdout, r.stderr
