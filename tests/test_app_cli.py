"""``xrobust app``: the command it runs, its defaults (127.0.0.1), its errors; the layering
(the library never imports the app; no torch maths or Captum in the app); the forward-only
probes the pages use (xrobust.models.inference)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from app_support import demo_cache  # noqa: F401

from xrobust.cli import main

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "xrobust" / "apps" / "dashboard"


def _printed(capsys, *argv: str) -> tuple[dict[str, str], list[str]]:
    assert main(["app", "--print-command", *argv]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    env = dict(line.split("=", 1) for line in lines[:-1])
    return env, lines[-1].split()


def test_default_command_listens_on_localhost(capsys) -> None:
    from xrobust.apps.dashboard import APP_PATH

    env, cmd = _printed(capsys)
    # streamlit run, through the launcher that warms the dashboard while the server starts
    assert cmd[1:5] == ["-m", "xrobust.apps.dashboard.serve", "run", str(APP_PATH)]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8501"
    # Streamlit never prompts, advertises, phones home, shows Deploy or opens a browser
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    assert cmd[cmd.index("--server.showEmailPrompt") + 1] == "false"
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    assert cmd[cmd.index("--client.toolbarMode") + 1] == "viewer"
    assert "XROBUST_APP_MODEL" not in env and APP_PATH.is_file()


def test_browser_opens_only_with_a_display() -> None:
    from xrobust.cli.app import has_display, page_url

    assert not has_display({}, "linux")
    assert has_display({"DISPLAY": ":0"}, "linux")
    assert has_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert has_display({}, "darwin") and has_display({}, "win32")
    assert page_url("0.0.0.0", 8501) == "http://127.0.0.1:8501"
    assert page_url("::1", 8600) == "http://[::1]:8600"
    assert page_url("127.0.0.1", 9) == "http://127.0.0.1:9"


def test_no_icon_from_the_internet() -> None:
    """A ":material/...:" favicon makes Streamlit's page fetch an SVG from fonts.gstatic.com
    (the icon font of page icons ships with Streamlit); the favicon must be local."""
    text = (APP_DIR / "streamlit_app.py").read_text()
    (call,) = [ln for ln in text.splitlines() if "set_page_config(" in ln]
    assert "page_icon" in call and ":material/" not in call and "http" not in call


def test_options_reach_streamlit_and_the_app(capsys, tmp_path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text("[adversarial]\nn = 8\n")
    env, cmd = _printed(
        capsys,
        "--host",
        "0.0.0.0",
        "--port",
        "9999",
        "--headless",
        "--model",
        "demo:digits",
        "--data",
        "digits",
        "--max-upload-mb",
        "5",
        "--audit-config",
        str(cfg),
    )
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--server.port") + 1] == "9999"
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    # one limit: Streamlit's upload size is the app's own (the widget said "51MB" for 50)
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == "5"
    assert env == {
        "XROBUST_APP_MAX_UPLOAD_MB": "5",
        "XROBUST_APP_MODEL": "demo:digits",
        "XROBUST_APP_DATA": "digits",
        "XROBUST_APP_AUDIT_CONFIG": str(cfg),
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "/no/such/run"], "no such run folder"),
        (["--port", "0"], "--port must be in 1..65535"),
        (["--max-upload-mb", "0"], "--max-upload-mb must be a whole number >= 1"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, argv, message) -> None:
    assert main(["app", "--print-command", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_audit_config_is_refused(capsys, tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[adversarial]\nnn = 3\n")
    assert main(["app", "--print-command", "--audit-config", str(bad)]) == 2
    assert "nn" in capsys.readouterr().err


def test_missing_streamlit_says_how_to_install(capsys, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "streamlit" else real(name, *a),
    )
    assert main(["app"]) == 2
    assert "pip install 'xrobust[app]'" in capsys.readouterr().err


def _help(argv: list[str]) -> int:
    """main()'s status for --help (argparse's exit status, returned or raised)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_help_lists_app(capsys) -> None:
    assert _help(["--help"]) == 0
    assert "app" in capsys.readouterr().out
    assert _help(["app", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--host" in out and "127.0.0.1" in out


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fresh_env(home: Path) -> dict[str, str]:
    """The environment of a new user: an empty HOME, no display, no Streamlit settings."""
    import os

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STREAMLIT_", "XROBUST_")) and k not in ("DISPLAY", "WAYLAND_DISPLAY")
    }
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), OMP_NUM_THREADS="1")
    env.pop("XDG_CACHE_HOME", None)
    return env


def _serve_and_fetch(cmd: list[str], home: Path, cwd: Path, port: int) -> tuple[str, str]:
    """Start ``cmd`` without a terminal (stdin closed, output to a file), fetch the page
    until it answers 200 (60 s at most), stop it; return (page, server output)."""
    import subprocess
    import time
    import urllib.request

    log = home.parent / f"server-{port}.log"
    page = ""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=_fresh_env(home),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # no controlling terminal
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert proc.poll() is None, f"exited {proc.returncode}: {log.read_text()}"
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                        if r.status == 200:
                            page = r.read().decode("utf-8", "replace")
                            with urllib.request.urlopen(
                                f"http://127.0.0.1:{port}/_stcore/health", timeout=5
                            ) as h:
                                assert h.status == 200
                            break
                except OSError:
                    time.sleep(0.5)
            assert page, f"no answer in 60 s: {log.read_text()}"
            time.sleep(1.0)  # let the server write what it prints after starting
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:  # pragma: no cover
                proc.kill()
                proc.wait()
    return page, log.read_text(errors="replace")


def _assert_quiet_first_run(out: str, home: Path) -> None:
    low = out.lower()
    assert "email" not in low, out
    assert "usage statistics" not in low and "gatherusagestats" not in low, out
    assert "skills" not in low and "deploy" not in low, out  # no advert
    assert "Traceback" not in out, out
    assert not (home / ".streamlit").exists()  # nothing written into the user's home


@pytest.mark.slow
def test_app_starts_first_time_without_a_terminal(tmp_path) -> None:
    """`xrobust app` with a fresh empty HOME, no TTY and stdin closed serves the page (the
    first run used to print Streamlit's e-mail prompt and exit 255)."""
    import sys

    home = tmp_path / "home"
    home.mkdir()
    port = _free_port()
    cmd = [sys.executable, "-m", "xrobust", "app", "--port", str(port), "--host", "127.0.0.1"]
    page, out = _serve_and_fetch(cmd, home, tmp_path, port)
    assert "<html" in page.lower()
    assert f"http://127.0.0.1:{port}" in out and "Ctrl+C" in out
    _assert_quiet_first_run(out, home)


@pytest.mark.slow
def test_checkout_entry_runs_with_streamlit(tmp_path) -> None:
    """`streamlit run apps/dashboard.py` from a checkout (with the same first-run options)."""
    from xrobust.cli.app import build_command

    home = tmp_path / "home"
    home.mkdir()
    port = _free_port()
    entry = ROOT / "apps" / "dashboard.py"
    assert entry.is_file()
    import argparse

    ns = argparse.Namespace(
        host="127.0.0.1", port=port, headless=True, model=None, data=None,
        audit_config=None, max_upload_mb=50,
    )  # fmt: skip
    cmd, _ = build_command(ns)
    cmd[cmd.index("run") + 1] = str(entry)
    page, out = _serve_and_fetch(cmd, home, ROOT, port)
    assert "<html" in page.lower()
    _assert_quiet_first_run(out, home)


def test_checkout_entry_is_thin(demo_cache) -> None:  # noqa: F811
    """apps/dashboard.py only hands over to the packaged app (AppTest renders it)."""
    from streamlit.testing.v1 import AppTest

    entry = ROOT / "apps" / "dashboard.py"
    mods = _imports(entry)
    assert not any(m.startswith(("torch", "captum")) for m in mods)
    at = AppTest.from_file(str(entry), default_timeout=120).run()
    assert not at.exception
    assert any("xrobust" in h.value for h in at.sidebar.header)


# ------------------------------------------------------------------ layering
def _imports(path: Path) -> set[str]:
    mods: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
    return mods


def test_the_library_never_imports_the_app() -> None:
    offenders = []
    for p in (ROOT / "xrobust").rglob("*.py"):
        if APP_DIR.parent in p.parents or p == ROOT / "xrobust" / "cli" / "app.py":
            continue
        if any(m.startswith("xrobust.apps") for m in _imports(p)):
            offenders.append(str(p.relative_to(ROOT)))
    assert offenders == []


def test_the_app_does_no_torch_maths_and_no_captum() -> None:
    files = list(APP_DIR.rglob("*.py"))
    assert len(files) >= 8
    for p in files:
        mods = _imports(p)
        assert not any(m.startswith("captum") for m in mods), p
        assert not any(m.startswith(("torch.nn", "torch.autograd")) for m in mods), p
        text = p.read_text()
        for call in ("softmax(", ".backward(", "torch.autograd", "torch.no_grad", "log_softmax"):
            assert call not in text, (p, call)


def test_the_app_ships_in_the_package() -> None:
    import xrobust.apps.dashboard as d

    assert d.APP_PATH.is_file() and d.APP_PATH.parent == APP_DIR
    pages = sorted(p.stem for p in d.PAGES_DIR.glob("*.py") if p.stem != "__init__")
    assert pages == ["adversarial", "blackbox", "compare", "explanations", "overview"]
    for p in pages:
        assert f'"{p}.py"' in d.APP_PATH.read_text()


# ------------------------------------------------------------------ library probes
def test_inference_probes() -> None:
    from xrobust.models.inference import (
        confidence_along,
        count_queries,
        direction_to,
        predict_proba,
        random_directions,
        unit_direction,
    )

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    model.train()
    x = torch.rand(6, 4)
    with count_queries(model) as q:
        p = predict_proba(model, x, batch_size=4)
    assert q.queries == 6 and q.calls == 2 and model.training  # mode restored
    assert torch.allclose(p, torch.softmax(model(x), 1).detach(), atol=1e-6)
    assert torch.allclose(p.sum(1), torch.ones(6))

    d = torch.tensor([[3.0, -4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.equal(unit_direction(d, "linf")[0], torch.tensor([0.75, -1.0, 0.0, 0.0]))
    assert torch.allclose(unit_direction(d, "l2")[0], torch.tensor([0.6, -0.8, 0.0, 0.0]))
    assert torch.equal(unit_direction(d, "l2")[1], torch.zeros(4))
    assert torch.allclose(direction_to(x[:2], x[:2] + d, "l2"), unit_direction(d, "l2"))

    r = random_directions(x, "linf", k=3, seed=1)
    assert r.shape == (3, 6, 4) and set(r.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(r, random_directions(x, "linf", k=3, seed=1))
    r2 = random_directions(x, "l2", k=2, seed=1)
    assert torch.allclose(r2.flatten(2).norm(dim=2), torch.ones(2, 6))

    y = torch.tensor([0, 1, 2, 0, 1, 2])
    c = confidence_along(model, x, y, r[0], [0.0, 0.5], bounds=(0.0, 1.0))
    assert c.shape == (6, 2)
    assert torch.allclose(c[:, 0], p[torch.arange(6), y])
    want = predict_proba(model, (x + 0.5 * r[0]).clamp(0, 1))[torch.arange(6), y]
    assert torch.allclose(c[:, 1], want)


@pytest.mark.slow
def test_the_wheel_ships_the_dashboard(tmp_path) -> None:
    """Built as a wheel and installed elsewhere, `xrobust app` finds its app outside the
    repository."""
    import shutil
    import subprocess
    import sys

    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "build",
            "*.egg-info",
            "runs",
            "reports",
            "__pycache__",
            "docs",
            "benchmarks",
        ),
    )
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(wheels)],
        check=True,
        capture_output=True,
    )
    (whl,) = wheels.glob("xrobust-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(whl)],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [sys.executable, "-m", "xrobust", "app", "--print-command"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cmd = out.strip().splitlines()[-1].split()
    app = Path(cmd[cmd.index("run") + 1])
    assert app.is_file() and target in app.parents
    assert (app.parent / "app_pages" / "adversarial.py").is_file()
