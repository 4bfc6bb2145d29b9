"""The README runs as written.

- every ``xrobust`` command line of the README parses with the CLI (no renamed flags), and
  every Python block compiles (fast);
- the Attack and Explain snippets run on the test fixtures (fast);
- the whole README, every shell and Python block in document order, runs in a fresh folder
  with the exit codes it implies (slow: it trains and audits for real); the quick start's
  demo audit, whose output goes to pipes, writes log-friendly progress and a worst case no
  higher than the ensemble alone, and the TensorFlow example's conversions agree.

The in-order run leaves out two lines, on purpose: ``bash scripts/test.sh`` (it is this test
suite) and the ``bash scripts/setup.sh &&`` prefix of the quick start (the environment running
the test is that setup); ``xrobust app`` lines run with ``--print-command`` (they would
start a server that never exits); a command already run identically earlier is not run again.
"""

from __future__ import annotations

import gzip
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from progress_support import assert_log_friendly, worst_case_no_higher_than_the_ensemble_alone

from xrobust.cli._progress import DEFAULT_INTERVAL

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SETUP_PREFIX = "bash scripts/setup.sh && .venv/bin/"
SKIP = {"bash scripts/test.sh"}
DEMO_LINE = "xrobust audit --demo --out reports/demo"
TF_LINE = "python examples/tensorflow_model.py tf_example"


def _blocks() -> list[tuple[str, str, str]]:
    """(language, code, heading) of every fenced block, in document order."""
    out, heading = [], ""
    for m in re.finditer(
        r"^(#+ [^\n]*)$|^```(\w*)\n(.*?)^```", README.read_text(), flags=re.S | re.M
    ):
        if m.group(1):
            heading = m.group(1).lstrip("# ").strip()
        elif m.group(2) in ("bash", "python"):
            out.append((m.group(2), m.group(3), heading))
    return out


def _shell_lines(code: str) -> list[str]:
    lines = []
    for raw in code.splitlines():
        line = re.sub(r"\s+#\s.*$", "", raw).strip()
        if not line or line.startswith("#") or line in SKIP:
            continue
        if line.startswith(SETUP_PREFIX):
            line = line[len(SETUP_PREFIX) :]
        if line.startswith(".venv/bin/"):  # the environment running the test is that venv
            line = line[len(".venv/bin/") :]
        if line.startswith("xrobust app"):  # a server: check what it would start, not start it
            line += " --print-command"
        lines.append(line)
    return lines


def _python_block(heading: str) -> str:
    blocks = [c for lang, c, h in _blocks() if lang == "python" and h == heading]
    assert blocks, f"no python block under '### {heading}'"
    return blocks[0]


def test_every_cli_line_parses_and_every_python_block_compiles() -> None:
    from xrobust.cli import build_parser

    parser = build_parser()
    n_cli = n_py = 0
    for lang, code, heading in _blocks():
        if lang == "python":
            compile(code, f"README:{heading}", "exec")
            n_py += 1
            continue
        for line in _shell_lines(code):
            words = shlex.split(line.replace("$(which xrobust)", "xrobust"))
            if "xrobust" not in words:
                continue
            argv = words[words.index("xrobust") + 1 :]
            try:
                parser.parse_args(argv)
            except SystemExit as exc:  # pragma: no cover - the failure message says which
                raise AssertionError(f"README line does not parse: {line}") from exc
            n_cli += 1
    assert n_cli >= 15 and n_py >= 5


def test_attack_and_explain_snippets_run(digits28, digits_cnn, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    ns = {"model": digits_cnn, "x": digits28["x_test"][:16], "y": digits28["y_test"][:16]}
    exec(compile(_python_block("Attack"), "README:Attack", "exec"), ns)
    res = ns["res"]
    assert 0.0 <= res.robust_accuracy <= res.clean_accuracy <= 1.0
    exec(compile(_python_block("Explain"), "README:Explain", "exec"), ns)
    assert ns["e"].attributions.shape == ns["x"].shape
    assert (tmp_path / "ig.png").stat().st_size > 0


def _user_files(folder: Path) -> None:
    """The files the README's examples name as the user's own."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = d.images.astype(np.float32) / 16.0, d.target
    np.savez(folder / "my_data.npz", x=x[:200], y=y[:200])
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(120, 4))
    label = (feats[:, 0] + feats[:, 1] > 0).astype(int)
    rows = ["a,b,c,d,label"] + [
        ",".join(f"{v:.4f}" for v in f) + f",{k}" for f, k in zip(feats, label)
    ]
    (folder / "my.csv").write_text("\n".join(rows) + "\n")
    species = np.array(["setosa", "versicolor"])[label]
    rows = ["w,x,y,z,species"] + [
        ",".join(f"{v:.4f}" for v in f) + f",{k}" for f, k in zip(feats, species)
    ]
    (folder / "table.csv").write_text("\n".join(rows) + "\n")
    mnist = folder / "mnist"
    mnist.mkdir()
    imgs = (x[:100] * 255).astype(np.uint8)
    for split, sl in (("train", slice(0, 80)), ("t10k", slice(80, 100))):
        head = b"\0\0\x08\x03" + np.array([len(imgs[sl]), 8, 8], ">u4").tobytes()
        (mnist / f"{split}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(head + imgs[sl].tobytes())
        )
        head = b"\0\0\x08\x01" + np.array([len(imgs[sl])], ">u4").tobytes()
        (mnist / f"{split}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(head + y[:100][sl].astype(np.uint8).tobytes())
        )
    for c in ("cats", "dogs"):
        (folder / "photos" / c).mkdir(parents=True)
        for i in range(50):
            arr = (rng.random((20, 20, 3)) * 255).astype(np.uint8)
            Image.fromarray(arr).save(folder / "photos" / c / f"{i}.png")


@pytest.mark.slow
def test_readme_runs_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    _user_files(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["XROBUST_CACHE"] = str(tmp_path / "cache")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["MPLBACKEND"] = "Agg"
    ns: dict = {}
    done: set[str] = set()
    outputs: dict[str, subprocess.CompletedProcess] = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for lang, code, heading in _blocks():
            if lang == "python":
                t0 = time.perf_counter()
                exec(compile(code, f"README:{heading}", "exec"), ns)
                print(f"{time.perf_counter() - t0:7.1f} s  (python block under {heading!r})")
                continue
            for line in _shell_lines(code):
                if line in done:
                    continue
                done.add(line)
                t0 = time.perf_counter()
                r = subprocess.run(
                    ["bash", "-c", line], env=env, capture_output=True, text=True, timeout=1800
                )
                print(f"{time.perf_counter() - t0:7.1f} s  {line}")  # shown with -s / -rP
                outputs[line] = r
                assert r.returncode == 0, (
                    f"README ({heading}): `{line}` exited {r.returncode}\n"
                    f"{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
                )
    finally:
        os.chdir(cwd)
    assert (tmp_path / "reports" / "run" / "report.json").exists()
    assert (tmp_path / "fig.png").stat().st_size > 0
    # the quick start's demo audit ran with its output in pipes, as in
    # `xrobust audit --demo > log 2>&1` (issue 9's Done-when): a few plain progress lines,
    # no bars, and a worst case no higher than the ensemble alone on the same examples
    demo = outputs[DEMO_LINE]
    assert assert_log_friendly(demo.stderr, DEFAULT_INTERVAL), demo.stderr[-2000:]
    assert "audit passed" in demo.stdout + demo.stderr
    monkeypatch.setenv("XROBUST_CACHE", env["XROBUST_CACHE"])  # the demo model it trained
    worst_case_no_higher_than_the_ensemble_alone(tmp_path / "reports" / "demo" / "report.json")
    _check_tensorflow_example(outputs[TF_LINE].stdout, tmp_path / "tf_example")


def _check_tensorflow_example(out: str, folder: Path) -> None:
    """Keras -> tf2onnx (NHWC) -> xrobust black-box and, with onnx2torch, white-box
    (scripts/setup.sh installs TensorFlow, tf2onnx and onnx2torch)."""
    assert (folder / "digits_keras.onnx").is_file()
    assert "layout NHWC" in out and "black-box: clean accuracy" in out, out
    diff = out.split("onnxruntime vs Keras on NCHW data: max abs logit difference ")[1]
    assert float(diff.split()[0]) <= 1e-4
    assert "white-box PGD" in out, out
    grad = out.split("input gradients, torch vs TensorFlow: max abs difference ")[1]
    assert float(grad.split()[0]) <= 1e-4
