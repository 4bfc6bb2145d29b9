"""`xrobust audit` on a tabular run folder: TOML config, flag overrides, exit status,
files written; config loading and validation; corruptions."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import torch
import torch.nn.functional as F

from xrobust.audit import AuditConfig, load_config
from xrobust.audit.corruptions import corrupt, list_corruptions
from xrobust.audit.validate import validate_report
from xrobust.cli import main
from xrobust.errors import ConfigError, DataError

TOML = """
seed = 1
batch_size = 64

[adversarial]
n = 32
attacks = ["fgsm", "pgd"]
norms = ["linf"]
steps = 5
bisection_steps = 3
eps.linf = [0.1, 0.5]

[corruption]
n = 64
severities = [1, 3]

[explanations]
enabled = false

[sanity]
n = 16
convergence_factor = 2

[requirements]
min_clean_accuracy = 0.8
max_ece = 0.3

[[requirements.robust]]
attack = "pgd"
norm = "linf"
eps = 0.1
min_accuracy = 0.3
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> str:
    from xrobust.data import as_tensors, load_dataset
    from xrobust.models import build_model, save_checkpoint

    ds = load_dataset("breast_cancer")
    torch.manual_seed(0)
    model = build_model("mlp", ds.spec)
    x, y = as_tensors(ds.train)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    out = tmp_path_factory.mktemp("run")
    save_checkpoint(model, out, spec=ds.spec)
    return str(out)


@pytest.fixture
def toml_file(tmp_path) -> str:
    p = tmp_path / "audit.toml"
    p.write_text(TOML)
    return str(p)


def test_cli_audit_passes_writes_reports_and_gates(run_dir, toml_file, tmp_path, capsys) -> None:
    out = tmp_path / "rep"
    rc = main(
        ["audit", "--model", run_dir, "--config", toml_file, "--out", str(out), "--no-progress"]
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "audit passed" in printed
    for name in ("report.html", "report.json", "junit.xml", "summary.md"):
        assert (out / name).stat().st_size > 0
    d = json.loads((out / "report.json").read_text())
    validate_report(d)
    assert d["config"]["seed"] == 1 and d["config"]["adversarial"]["n"] == 32  # from the TOML
    assert d["dataset"]["spec"]["modality"] == "tabular"
    corr = d["sections"]["corruption"]["data"]["corruptions"]
    assert set(corr) == {"feature_noise", "missing_features"}
    assert d["sections"]["explanations"]["status"] == "skipped"
    ET.parse(out / "junit.xml")
    # a flag overrides the TOML and a failed threshold gives exit status 1
    rc = main(
        [
            "audit",
            "--model",
            run_dir,
            "--config",
            toml_file,
            "--out",
            str(out),
            "--no-progress",
            "--min-clean-accuracy",
            "0.9999",
            "--skip",
            "corruption,sanity",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 1 and "FAILED min_clean_accuracy" in printed
    d = json.loads((out / "report.json").read_text())
    assert d["passed"] is False and d["sections"]["corruption"]["status"] == "skipped"
    root = ET.parse(out / "junit.xml").getroot()
    failed = [c.get("name") for c in root.iter("testcase") if c.find("failure") is not None]
    assert failed == ["verdict", "min_clean_accuracy"]


def test_cli_require_flag(run_dir, toml_file, tmp_path, capsys) -> None:
    rc = main(
        [
            "audit",
            "--model",
            run_dir,
            "--config",
            toml_file,
            "--out",
            str(tmp_path / "rep"),
            "--no-progress",
            "--skip",
            "corruption,sanity,clean",
            "--require",
            "worst:linf:0.5:0.99",
        ]
    )
    assert rc == 1
    assert "FAILED robust_accuracy[worst,linf,eps=0.5]" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["audit", "--out", "x"], "nothing to audit"),
        (["audit", "--demo", "--model", "r"], "either --demo or --model"),
        (["audit", "--demo", "--skip", "cleen"], "unknown section 'cleen'"),
        (["audit", "--demo", "--require", "pgd:linf:0.1"], "ATTACK:NORM:EPS:MIN"),
        (["audit", "--demo", "--eps-linf", "0.1,abc"], "comma-separated numbers"),
    ],
)
def test_cli_usage_errors(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_bad_toml(tmp_path, capsys) -> None:
    p = tmp_path / "a.toml"
    p.write_text("[adversarial]\nattaks = ['pgd']\n")
    assert main(["audit", "--demo", "--config", str(p)]) == 2
    assert "Did you mean 'attacks'" in capsys.readouterr().err
    p.write_text("seed = \n")
    assert main(["audit", "--demo", "--config", str(p)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


# ---------------------------------------------------------------------- config
def test_config_round_trip_and_toml(toml_file) -> None:
    cfg = load_config(toml_file)
    assert cfg.seed == 1 and cfg.adversarial.eps == {"linf": [0.1, 0.5]}
    assert cfg.requirements.robust[0].name == "robust_accuracy[pgd,linf,eps=0.1]"
    assert AuditConfig.from_dict(cfg.to_dict()) == cfg
    assert AuditConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize(
    "d, message",
    [
        ({"adversarial": {"norms": ["l3"]}}, "unknown norm"),
        ({"adversarial": {"eps": {"linf": [-0.1]}}}, "positive numbers"),
        ({"adversarial": {"n": 0}}, "positive integer"),
        ({"adversarial": {"steps": "ten"}}, "must be an integer"),
        ({"corruption": {"severities": [6]}}, "1..5"),
        ({"requirements": {"min_clean_accuracy": 1.5}}, r"\[0, 1\]"),
        ({"requirements": {"robust": [{"attack": "pgd", "norm": "linf", "eps": 0.1}]}}, "missing"),
        ({"clean": {"enabled": "yes"}}, "true or false"),
        ({"explanation": {}}, "Did you mean 'explanations'"),
    ],
)
def test_config_errors(d, message) -> None:
    with pytest.raises(ConfigError, match=message):
        AuditConfig.from_dict(d)


# ---------------------------------------------------------------------- corruptions
def test_corruptions_keep_bounds_shape_and_are_seeded() -> None:
    x = torch.rand(6, 1, 16, 16)
    for name in list_corruptions("image"):
        for sev in (1, 5):
            a = corrupt(name, x, sev, bounds=(0.0, 1.0), generator=torch.Generator().manual_seed(3))
            b = corrupt(name, x, sev, bounds=(0.0, 1.0), generator=torch.Generator().manual_seed(3))
            assert a.shape == x.shape and a.dtype == x.dtype
            assert torch.equal(a, b)
            assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # severity orders the damage
    d1 = (corrupt("gaussian_noise", x, 1, bounds=(0, 1)) - x).abs().mean()
    d5 = (corrupt("gaussian_noise", x, 5, bounds=(0, 1)) - x).abs().mean()
    assert d5 > 2 * d1


def test_corruption_closed_forms() -> None:
    const = torch.full((2, 3, 12, 12), 0.4)
    # blurring or changing the contrast of a constant image leaves it as it was
    assert torch.allclose(corrupt("gaussian_blur", const, 5, bounds=(0, 1)), const, atol=1e-6)
    assert torch.allclose(corrupt("contrast", const, 5, bounds=(0, 1)), const, atol=1e-6)
    # brightness adds a fraction of the range (severity 1: 0.1 of [0, 2])
    assert torch.allclose(corrupt("brightness", const, 1, bounds=(0, 2)), const + 0.2)
    # contrast scales deviations from the image mean by the level (severity 2: 0.5)
    x = torch.rand(2, 1, 8, 8)
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(corrupt("contrast", x, 2, bounds=(0, 1)), (x - m) * 0.5 + m, atol=1e-6)
    # occlusion: one square patch of round(0.15 * 20) = 3 pixels a side at the lower bound
    ones = torch.ones(4, 1, 20, 20)
    occ = corrupt("occlusion", ones, 1, bounds=(0, 1), generator=torch.Generator().manual_seed(0))
    assert (occ == 0).flatten(1).sum(1).tolist() == [9, 9, 9, 9]


def test_tabular_corruptions() -> None:
    x = torch.randn(5, 10)
    mean = torch.arange(10, dtype=torch.float32)
    y = corrupt("missing_features", x, 3, bounds=(-100, 100), train_mean=mean)
    replaced = y != x
    assert replaced.sum(1).tolist() == [3] * 5  # 30% of 10 features per row
    assert torch.equal(y[replaced], mean.expand(5, 10)[replaced])
    std = torch.full((10,), 2.0)
    z = corrupt("feature_noise", torch.zeros(2000, 10), 4, bounds=(-100, 100), feature_std=std)
    assert abs(float(z.std()) - 0.75 * 2.0) < 0.05
    with pytest.raises(DataError, match="image batch"):
        corrupt("gaussian_blur", x, 1, bounds=(0, 1))
    with pytest.raises(ConfigError, match=r"1\.\.5"):
        corrupt("feature_noise", x, 0, bounds=(0, 1))
    with pytest.raises(ConfigError, match="Did you mean"):
        corrupt("gausian_noise", x, 1, bounds=(0, 1))
