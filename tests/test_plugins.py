"""Plugins: an installed distribution adds an attack and an explainer through entry points.

The distribution is ``examples/plugin_example`` made installed by hand: its package copied
into a temporary folder beside a ``*.dist-info`` folder (``METADATA`` and an
``entry_points.txt`` written from the example's own ``pyproject.toml``), which is what
``pip install`` leaves and what ``importlib.metadata`` reads from ``PYTHONPATH``. The real
CLI runs in subprocesses with that ``PYTHONPATH``; the Python API is checked in-process
after :func:`xrobust.plugins.reload`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from xrobust import plugins
from xrobust.attacks import ATTACKS, PGD, get_attack, list_attacks
from xrobust.audit.config import tomllib  # tomli on Python 3.10
from xrobust.errors import ConfigError
from xrobust.explain import EXPLAINERS, explain, list_explainers
from xrobust.plugins import PluginWarning

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugin_example"
TOY = "xrobust-toy-plugin 0.1.0"


def _dist(where: Path, name: str, version: str, groups: dict[str, dict[str, str]]) -> None:
    """A ``NAME-VERSION.dist-info`` folder declaring ``groups`` of entry points."""
    info = where / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    text = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
        for group, eps in groups.items()
    )
    (info / "entry_points.txt").write_text(text)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A folder where the example plugin is installed, as ``pip install --target`` would."""
    where = tmp_path_factory.mktemp("site_good")
    shutil.copytree(
        EXAMPLE / "xrobust_toy_plugin",
        where / "xrobust_toy_plugin",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    _dist(where, project["name"], project["version"], project["entry-points"])
    return where


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """Broken and refused plugins: an import error, a built-in's name, a non-attack, a class
    whose declared name differs, and one name declared by two distributions."""
    where = tmp_path_factory.mktemp("site_bad")
    pkg = where / "xrobust_bad_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "broken.py").write_text("import a_dependency_that_is_not_installed\n")
    (pkg / "misc.py").write_text(
        "from xrobust.attacks import FGSM\n\n"
        "class Renamed(FGSM):\n    name = 'something_else'\n\n"
        "def not_an_attack():\n    return None\n"
    )
    attacks = {
        "broken": "xrobust_bad_plugin.broken:Attack",
        "pgd": "xrobust_bad_plugin.misc:Renamed",
        "helper": "xrobust_bad_plugin.misc:not_an_attack",
        "renamed": "xrobust_bad_plugin.misc:Renamed",
        "twice": "xrobust_bad_plugin.misc:Renamed",
    }
    _dist(where, "xrobust-bad-plugin", "2.0", {"xrobust.attacks": attacks})
    _dist(where, "xrobust-other-plugin", "1.5", {"xrobust.attacks": {"twice": attacks["twice"]}})
    return where


def _cli(
    args: list[str], path: list[Path], tmp_path: Path, **env: str
) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("xrobust")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "xrobust"]
    full = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", plugins.ENV_VAR)}
    full.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(map(str, path)), **env)
    return subprocess.run(
        cmd + args, cwd=tmp_path, env=full, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from xrobust.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "bc"
    train("breast_cancer", "mlp", TrainConfig(epochs=3, device="cpu"), out, progress=False)
    return out


# ------------------------------------------------------------------ the real CLI
def test_list_shows_plugin_entries_with_their_source(good, tmp_path) -> None:
    r = _cli(["list"], [good], tmp_path)
    assert r.returncode == 0, r.stderr
    rows = {tuple(line.split(None, 1)) for line in r.stdout.splitlines() if "  " in line}
    assert ("bim", TOY) in rows and ("deconvolution", TOY) in rows
    assert ("pgd", "built-in") in rows and ("saliency", "built-in") in rows
    assert "PluginWarning" not in r.stderr


@pytest.mark.slow
def test_attack_cli_runs_the_plugin_attack(good, run_dir, tmp_path) -> None:
    args = ["attack", "--model", str(run_dir), "--data", "breast_cancer", "--attack", "bim"]
    r = _cli(
        [*args, "--eps", "0.5", "--steps", "5", "--limit", "64", "--json", "--no-progress"],
        [good],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["attack"] == "bim" and s["n"] == 64
    assert 0.8 <= s["clean_accuracy"] <= 1.0
    assert s["robust_accuracy"] <= s["clean_accuracy"]  # an attack never adds correct rows
    assert s["max_norm"] <= 0.5 + 1e-6 and s["config"]["steps"] == 5


@pytest.mark.slow
def test_audit_cli_reports_the_plugin_attack_beside_pgd(good, run_dir, tmp_path) -> None:
    out = tmp_path / "rep"
    r = _cli(
        [
            "audit", "--model", str(run_dir), "--attacks", "bim,pgd", "--norms", "linf",
            "--eps-linf", "0.25,0.5", "--steps", "5", "--n", "48", "--skip",
            "corruption,explanations,sanity", "--no-sanity-requirement", "--out", str(out),
            "--require", "bim:linf:0.25:0.0", "--min-clean-accuracy", "0.5", "--no-progress",
        ],
        [good],
        tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr  # a requirement on the plugin's figure
    adv = json.loads((out / "report.json").read_text())["sections"]["adversarial"]["data"]
    assert adv["attacks"] == ["bim", "pgd"]
    bim = adv["norms"]["linf"]["curves"]["bim"]
    assert bim["bound"] == "measured" and bim["config"]["steps"] == 5
    acc = bim["robust_accuracy"]
    assert len(acc) == 2 and acc[1] <= acc[0] <= adv["clean_accuracy"]
    assert "bim" in (out / "report.html").read_text()


def test_a_broken_plugin_is_one_warning_and_the_cli_works(good, bad, tmp_path) -> None:
    r = _cli(["list", "attacks"], [good, bad], tmp_path)
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if "PluginWarning" in line]
    expect = {
        "broken": ("could not be loaded: ModuleNotFoundError", "a_dependency_that_is_not"),
        "pgd": ("xrobust already has the attack 'pgd' (built-in)", "built-ins win"),
        "helper": ("not a subclass of xrobust.attacks.base.Attack",),
        "renamed": ("declares name = 'something_else'",),
        "twice": ("declared by both xrobust-bad-plugin 2.0 and xrobust-other-plugin 1.5",),
    }
    assert len(warned) == len(expect) + 1  # 'twice' is reported for each distribution
    for name, parts in expect.items():
        line = next(w for w in warned if f"plugin {name!r}" in w)
        assert "xrobust.attacks entry point" in line and "xrobust-" in line
        assert all(p in line for p in parts), line
    listed = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert listed["bim"] == TOY and listed["pgd"] == "built-in"
    assert not {"broken", "helper", "renamed", "twice"} & set(listed)


def test_xrobust_plugins_0_hides_them(good, bad, tmp_path) -> None:
    r = _cli(["list", "attacks", "--names"], [good, bad], tmp_path, XROBUST_PLUGINS="0")
    assert r.returncode == 0 and r.stderr == ""
    assert "bim" not in r.stdout.split() and "pgd" in r.stdout.split()


def test_plugins_load_lazily_once(good, tmp_path) -> None:
    code = (
        "import sys, xrobust.attacks as A\n"
        "assert 'xrobust_toy_plugin' not in sys.modules\n"
        "assert 'bim' in A.list_attacks(requires_gradients=True)\n"
        "assert 'xrobust_toy_plugin.bim' in sys.modules\n"
        "assert 'xrobust_toy_plugin.deconvolution' not in sys.modules  # its own group\n"
    )
    full = {**os.environ, "PYTHONPATH": str(good), "OMP_NUM_THREADS": "1"}
    full.pop(plugins.ENV_VAR, None)
    r = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------ the Python API
@contextlib.contextmanager
def _importable(monkeypatch: pytest.MonkeyPatch, *folders: Path) -> Iterator[None]:
    """``folders`` on ``sys.path`` (plugins on), registries re-read at the next lookup; on
    the way out the path, the environment and the plugin modules are as before."""
    for folder in folders:
        monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    plugins.reload()
    try:
        yield
    finally:
        monkeypatch.undo()
        for mod in [m for m in sys.modules if m.startswith("xrobust_")]:  # the plugins' own
            del sys.modules[mod]
        plugins.reload()


@pytest.fixture
def installed(good, monkeypatch) -> Iterator[None]:
    """The example plugin importable in this process."""
    with _importable(monkeypatch, good):
        yield


def test_python_api_sees_the_plugin_attack(installed) -> None:
    assert "bim" in list_attacks() and "bim" in list_attacks(requires_gradients=True)
    assert ATTACKS.source("BIM") == TOY and ATTACKS.source("pgd") == "built-in"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x, y = torch.rand(32, 6), torch.arange(32) % 3
    kw = dict(eps=0.2, steps=7, step_size=0.05, bounds=(0.0, 1.0), early_stop=False)
    bim = get_attack("bim", model, **kw).run(x, y)
    # BIM is PGD without a random start: the same iterates
    pgd = PGD(model, random_start=False, **kw).run(x, y)
    assert bim.attack == "bim"
    assert torch.allclose(bim.x_adv, pgd.x_adv, atol=1e-6)
    assert bim.robust_accuracy == pgd.robust_accuracy < bim.clean_accuracy
    with pytest.raises(ConfigError, match="step_size"):
        get_attack("bim", model, eps=0.1, step_sise=0.1)


def test_python_api_sees_the_plugin_explainer(installed) -> None:
    assert "deconvolution" in list_explainers(requires_gradients=True)
    assert EXPLAINERS.source("deconvolution") == TOY
    torch.manual_seed(0)
    lin = nn.Linear(5, 4)
    x, target = torch.randn(3, 5), torch.tensor([0, 2, 3])
    e = explain(lin, x, target=target, method="deconvolution")
    assert e.method == "deconvolution"
    assert torch.allclose(e.attributions, lin.weight.detach()[target], atol=1e-6)


def test_cli_in_process_names_and_refusal(installed, monkeypatch, capsys) -> None:
    from xrobust.cli import main

    assert main(["list", "attacks", "--names", "--pattern", "B*"]) == 0
    assert capsys.readouterr().out.split() == ["bim"]
    monkeypatch.setenv(plugins.ENV_VAR, "0")
    plugins.reload()
    assert main(["attack", "--model", "no_such_run", "--attack", "bim", "--eps", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "unknown attack 'bim'" in err and "Traceback" not in err


def test_problems_are_kept_for_front_ends(installed, bad, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(bad))
    plugins.reload()
    assert plugins.problems() == []  # nothing is read before the first lookup
    with pytest.warns(PluginWarning) as caught:
        names = list_attacks()
    assert "bim" in names and not {"broken", "helper", "renamed", "twice"} & set(names)
    assert plugins.problems() == [str(w.message) for w in caught] and len(caught) == 6
    list_attacks()  # once per process: no second report
    assert len(plugins.problems()) == 6


def test_toml_config_names_a_plugin_attack(installed, tmp_path) -> None:
    from xrobust.audit.config import load_config

    path = tmp_path / "audit.toml"
    path.write_text(
        '[adversarial]\nattacks = ["bim", "pgd"]\n[adversarial.options.bim]\nsteps = 3\n'
    )
    assert load_config(path).adversarial.attacks[0] == "bim"
    path.write_text('[adversarial]\nattacks = ["bim"]\n[adversarial.options.bim]\nstepz = 3\n')
    with pytest.raises(ConfigError, match="steps"):
        load_config(path)


def test_without_plugins_the_names_are_unknown(good, monkeypatch) -> None:
    with _importable(monkeypatch, good):
        monkeypatch.setenv(plugins.ENV_VAR, "0")
        plugins.reload()
        assert "bim" not in list_attacks()
        with pytest.raises(ConfigError, match="unknown attack 'bim'"):
            get_attack("bim", nn.Linear(2, 2), eps=0.1)
        monkeypatch.setenv(plugins.ENV_VAR, "maybe")
        plugins.reload()
        with pytest.raises(ConfigError, match="XROBUST_PLUGINS='maybe'"):
            list_attacks()


def test_a_built_in_registered_later_replaces_a_plugin(installed) -> None:
    from xrobust.attacks.guide import MIFGSM

    assert "bim" in ATTACKS
    mine = type("BIM", (MIFGSM,), {"name": "bim", "__module__": "xrobust.attacks.fake"})
    with pytest.warns(PluginWarning, match=r"bim.*xrobust-toy-plugin 0\.1\.0.*built-ins win"):
        ATTACKS.register("bim")(mine)
    try:
        assert ATTACKS.get("bim") is mine and ATTACKS.source("bim") == "built-in"
        assert "replaced by the built-in attack" in plugins.problems()[-1]
    finally:
        ATTACKS.unregister("bim")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plugins.reload()
        assert ATTACKS.source("bim") == TOY  # read again, no warning


# ------------------------------------------------------------------ datasets and models
_EXTRA = '''
import numpy as np
import torch
from torch import nn

from xrobust.data import TensorPairDataset
from xrobust.data.spec import DatasetBundle, DatasetSpec


def load_quadrants(*, size=None, test_fraction=0.2, seed=0):
    """Points of [-1, 1]^2 labelled by their quadrant (4 classes)."""
    x = np.random.default_rng(seed).uniform(-1, 1, (200, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) * 2 + (x[:, 1] > 0)
    n_test = int(len(x) * test_fraction)
    spec = DatasetSpec("quadrants", "tabular", (2,), 4, ("a", "b", "c", "d"), (-1.0, 1.0))
    t = torch.from_numpy
    return DatasetBundle(
        TensorPairDataset(t(x[n_test:]), t(y[n_test:])), TensorPairDataset(t(x[:n_test]), t(y[:n_test])), spec
    )


def wide_linear(spec, *, width=32):
    return nn.Sequential(nn.Linear(spec.input_shape[0], width), nn.ReLU(), nn.Linear(width, spec.num_classes))
'''


@pytest.fixture
def extra(tmp_path, monkeypatch) -> Iterator[None]:
    """A distribution adding a dataset and a model architecture."""
    (tmp_path / "xrobust_extra_plugin.py").write_text(_EXTRA)
    groups = {
        "xrobust.datasets": {"quadrants": "xrobust_extra_plugin:load_quadrants"},
        "xrobust.models": {"wide_linear": "xrobust_extra_plugin:wide_linear"},
    }
    _dist(tmp_path, "xrobust-extra-plugin", "0.3", groups)
    with _importable(monkeypatch, tmp_path):
        yield


def test_plugin_dataset_and_model_train_and_reload(extra, tmp_path) -> None:
    from xrobust.data import DATASETS, list_datasets, load_dataset
    from xrobust.models import MODELS, build_model, list_models, load_model
    from xrobust.trainer import TrainConfig, train

    assert "quadrants" in list_datasets() and "wide_linear" in list_models()
    assert (
        DATASETS.source("quadrants") == MODELS.source("wide_linear") == "xrobust-extra-plugin 0.3"
    )
    ds = load_dataset("quadrants")
    assert ds.spec.num_classes == 4 and len(ds.train) == 160
    with pytest.raises(ConfigError, match="width"):
        build_model("wide_linear", ds.spec, widht=8)
    model, _ = train(ds, "wide_linear", TrainConfig(epochs=2, device="cpu"), tmp_path / "run",
                     model_kwargs={"width": 8}, progress=False)  # fmt: skip
    again = load_model(tmp_path / "run")  # the checkpoint names the plugin's architecture
    x = torch.rand(5, 2) * 2 - 1
    assert torch.equal(again(x), model.eval()(x))
