"""The README runs as written.

- every ``xrobust`` command line of the README parses with the CLI (no renamed flags), and
  every Python block compiles (fast);
- the data files the Tour reads are what ``examples/data/make_files.py`` writes (fast);
- the Attack and Explain snippets run on the test fixtures (fast);
- the whole README runs as a reader runs it (slow: it trains and audits for real): in a fresh
  folder holding only ``examples/`` and the venv (as ``.venv``), every shell line in document
  order in ONE bash session started without the venv on ``PATH`` (so the README's own
  ``source .venv/bin/activate`` is what makes ``xrobust`` and ``python`` work, and ``export``
  or ``cd`` carry over), and every Python block in order in ONE ``python`` session started
  from that shell's environment; any non-zero exit status or traceback fails it. The quick
  start's demo audit, whose output goes to files, writes log-friendly progress and a worst
  case no higher than the ensemble alone, and the TensorFlow example's conversions agree.

Two things are left out, on purpose: ``bash scripts/test.sh`` (it is this test suite) and the
``bash scripts/setup.sh &&`` prefix of the quick start (the environment running the test is
that setup); ``xrobust app`` lines run with ``--print-command`` (they would start a server
that never exits).
"""

from __future__ import annotations

import gzip
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from progress_support import assert_log_friendly, worst_case_no_higher_than_the_ensemble_alone

from xrobust.cli._progress import DEFAULT_INTERVAL

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SETUP_PREFIX = "bash scripts/setup.sh && "
SKIP = {"bash scripts/test.sh"}
DEMO_LINE = ".venv/bin/xrobust audit --demo --out reports/demo"
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
    """The lines a reader runs, continuation lines joined, comments dropped."""
    lines, joined = [], re.sub(r"\\\n\s*", " ", code)
    for raw in joined.splitlines():
        line = re.sub(r"\s+#\s.*$", "", raw).strip()
        if not line or line.startswith("#") or line in SKIP:
            continue
        if line.startswith(SETUP_PREFIX):
            line = line[len(SETUP_PREFIX) :]
        if re.match(r"(\.venv/bin/)?xrobust app\b", line):  # a server: what it would start
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
            at = [i for i, w in enumerate(words) if w in ("xrobust", ".venv/bin/xrobust")]
            if not at:
                continue
            argv = words[at[0] + 1 :]
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


def test_shipped_example_data_is_what_the_script_writes(tmp_path: Path) -> None:
    """examples/data holds exactly what examples/data/make_files.py writes (no stale or
    hand-edited file), read back through the loaders the README shows."""
    from PIL import Image

    sys.path.insert(0, str(ROOT / "examples" / "data"))
    try:
        import make_files
    finally:
        sys.path.pop(0)
    make_files.write_all(tmp_path)
    shipped = ROOT / "examples" / "data"
    names = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert names == sorted(
        p.relative_to(shipped).as_posix()
        for p in shipped.rglob("*")
        if p.is_file() and p.name != "make_files.py" and "__pycache__" not in p.parts
    )
    for name in names:
        new, old = tmp_path / name, shipped / name
        if name.endswith(".npz"):
            with np.load(new) as a, np.load(old) as b:
                assert sorted(a.files) == sorted(b.files)
                for k in a.files:
                    np.testing.assert_array_equal(a[k], b[k])
        elif name.endswith(".png"):
            np.testing.assert_array_equal(np.asarray(Image.open(new)), np.asarray(Image.open(old)))
        elif name.endswith(".gz"):
            assert gzip.decompress(new.read_bytes()) == gzip.decompress(old.read_bytes()), name
        else:
            assert new.read_bytes() == old.read_bytes(), name


def _reader_folder(tmp_path: Path) -> Path:
    """A fresh folder with what a clone holds that the README reads: examples/, and the
    venv the quick start made (a link to the one running this test)."""
    from readme_support import venv_of

    venv = venv_of(sys.executable)
    if venv is None:
        pytest.skip("the README test needs the venv made by scripts/setup.sh (no bin/activate)")
    folder = tmp_path / "clone"
    folder.mkdir()
    shutil.copytree(
        ROOT / "examples", folder / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    (folder / ".venv").symlink_to(venv, target_is_directory=True)
    for server_venv in (".venv-kserve", ".venv-mlserver"):  # the model servers' own venvs
        if (ROOT / server_venv).is_dir():
            (folder / server_venv).symlink_to(ROOT / server_venv, target_is_directory=True)
    return folder


def _fresh_shell_env(tmp_path: Path) -> dict[str, str]:
    """This process's environment, as a fresh terminal has it: the venv not active."""
    from readme_support import without_distributed

    env = without_distributed(dict(os.environ))
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.pop("VIRTUAL_ENV", None)
    env["XROBUST_CACHE"] = str(tmp_path / "cache")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["MPLBACKEND"] = "Agg"
    return env


def _failure(heading: str, step) -> str:
    return (
        f"README ({heading}): `{step.code.strip()[:300]}` "
        f"{'raised' if step.traceback else f'exited {step.returncode}'}\n"
        f"--- stdout\n{step.stdout[-2000:]}\n--- stderr\n{step.stderr[-3000:]}"
    )


@pytest.mark.slow
def test_readme_runs_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from readme_support import PythonSession, ShellSession

    folder = _reader_folder(tmp_path)
    shell = ShellSession(folder, _fresh_shell_env(tmp_path), tmp_path / "logs")
    python: PythonSession | None = None
    steps: dict[str, object] = {}
    try:
        for lang, code, heading in _blocks():
            if lang == "python":
                if python is None:  # the reader starts `python` from their shell
                    python = PythonSession("python", folder, shell.environment())
                todo = [code]
            else:
                todo = _shell_lines(code)
            for item in todo:
                session = python if lang == "python" else shell
                step = session.run(item, timeout=1800)
                print(f"{step.seconds:7.1f} s  {item.strip().splitlines()[0][:100]}")  # -rP / -s
                assert step.returncode == 0 and not step.traceback, _failure(heading, step)
                steps[item] = step
    finally:
        shell.close()
        if python is not None:
            python.close()
    assert (folder / "reports" / "run" / "report.json").exists()
    assert (folder / "reports" / "python" / "report.json").exists()
    assert (folder / "fig.png").stat().st_size > 0
    # the quick start's demo audit ran with its output going to files, as in
    # `xrobust audit --demo > log 2>&1` (issue 9's Done-when): a few plain progress lines,
    # no bars, and a worst case no higher than the ensemble alone on the same examples
    demo = steps[DEMO_LINE]
    assert assert_log_friendly(demo.stderr, DEFAULT_INTERVAL), demo.stderr[-2000:]
    assert "audit passed" in demo.stdout + demo.stderr
    monkeypatch.setenv("XROBUST_CACHE", str(tmp_path / "cache"))  # the demo model it trained
    worst_case_no_higher_than_the_ensemble_alone(folder / "reports" / "demo" / "report.json")
    _check_tensorflow_example(steps[TF_LINE].stdout, folder / "tf_example")


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
