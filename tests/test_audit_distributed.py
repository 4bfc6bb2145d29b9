"""Under torchrun (2 gloo processes) the audit shards its examples and gives the same report
numbers as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import TensorDataset

    from xrobust.audit import AuditConfig, audit
    from xrobust.data.spec import DatasetBundle, DatasetSpec


    class TinyCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
            self.fc1 = nn.Linear(32 * 7 * 7, 64)
            self.fc2 = nn.Linear(64, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            return self.fc2(F.relu(self.fc1(x.flatten(1))))


    folder = sys.argv[1]
    torch.set_num_threads(1)
    distributed = int(__import__("os").environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("gloo")
    d = torch.load(folder + "/data.pt", weights_only=True)
    model = TinyCNN()
    model.load_state_dict(torch.load(folder + "/model.pt", weights_only=True))
    spec = DatasetSpec("digits-test", "image", (1, 28, 28), 10, tuple("0123456789"), (0.0, 1.0))
    bundle = DatasetBundle(TensorDataset(d["x_train"], d["y_train"]),
                           TensorDataset(d["x_test"], d["y_test"]), spec)
    cfg = AuditConfig.from_dict(json.loads(open(folder + "/config.json").read()))
    report = audit(model, bundle, cfg)
    if not distributed or dist.get_rank() == 0:
        name = "dist.json" if distributed else "single.json"
        open(folder + "/" + name, "w").write(report.to_json())
    if distributed:
        dist.destroy_process_group()
    """
)

CONFIG = {
    "batch_size": 16,
    "clean": {"n": 100},
    "adversarial": {
        "n": 64,
        "attacks": ["fgsm", "pgd"],
        "norms": ["linf"],
        "eps": {"linf": [0.05, 0.15]},
        "steps": 5,
        "bisection_steps": 3,
        "n_vulnerable": 2,
    },
    "corruption": {"n": 64, "severities": [2]},
    "explanations": {"n": 2, "n_metrics": 4, "methods": ["saliency"], "randomisation": False},
    "sanity": {"n": 16, "convergence_factor": 2},
    "requirements": {"min_clean_accuracy": 0.5},
}


def _untimed(v: object) -> object:
    """``v`` without wall-clock fields (seconds, time_s), which differ from run to run."""
    if isinstance(v, dict):
        return {k: _untimed(w) for k, w in v.items() if k not in ("seconds", "time_s")}
    if isinstance(v, list):
        return [_untimed(w) for w in v]
    return v


def _numbers(path: str) -> dict:
    with open(path) as fh:
        d = _untimed(json.load(fh))
    return {
        "sections": d["sections"],
        "sanity": d["sanity_checks"],
        "requirements": d["requirements"],
    }


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path, digits28, digits_cnn) -> None:
    torch.save(
        {k: v[:400] if k.endswith("train") else v for k, v in digits28.items()},
        tmp_path / "data.pt",
    )
    torch.save(digits_cnn.state_dict(), tmp_path / "model.pt")
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    (tmp_path / "run.py").write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    env.pop("WORLD_SIZE", None)
    one = subprocess.run(
        [sys.executable, str(tmp_path / "run.py"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(tmp_path / "run.py"),
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    single, dist = _numbers(str(tmp_path / "single.json")), _numbers(str(tmp_path / "dist.json"))
    report = json.loads((tmp_path / "dist.json").read_text())
    assert report["environment"]["world_size"] == 2
    assert single["sections"]["adversarial"]["status"] == "ok"
    curve = single["sections"]["adversarial"]["data"]["norms"]["linf"]["curves"]["pgd"]
    assert curve["robust_accuracy"][0] < 1.0
    assert dist == single
