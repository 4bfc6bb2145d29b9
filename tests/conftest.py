"""Shared, deterministic fixtures: small data and small trained models.

The models here are plain ``nn.Module``s trained in a few seconds with a fixed seed, so
that attack, explainer and audit tests do not depend on the Trainer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

# The suite runs with one worker per core (pytest -n 2 on 2 cores): one torch thread each,
# since oversubscribed threads make small models 10-40x slower.
torch.set_num_threads(1)


def _digits_arrays(size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(d.target, dtype=torch.long)
    return x, y


class TinyCNN(nn.Module):
    """LeNet-like CNN for 1x28x28 inputs in [0, 1], returning logits."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return model


@pytest.fixture(scope="session")
def digits28() -> dict[str, torch.Tensor]:
    """Digits at 1x28x28 in [0, 1]: a fixed split of 1,497 train and 300 test images."""
    x, y = _digits_arrays(28)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:-300], perm[-300:]
    return {"x_train": x[tr], "y_train": y[tr], "x_test": x[te], "y_test": y[te]}


@pytest.fixture(scope="session")
def digits_cnn(digits28: dict[str, torch.Tensor]) -> nn.Module:
    """A TinyCNN trained on digits (about 97% test accuracy), in eval mode."""
    torch.manual_seed(0)
    return _fit(TinyCNN(), digits28["x_train"], digits28["y_train"], epochs=4, lr=2e-3)


@pytest.fixture(scope="session")
def breast_cancer() -> dict[str, torch.Tensor]:
    """Standardised breast-cancer features (30) with a fixed split."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x = torch.tensor(d.data, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:-114], perm[-114:]
    mu, sd = x[tr].mean(0), x[tr].std(0)
    x = (x - mu) / sd
    return {
        "x_train": x[tr],
        "y_train": y[tr],
        "x_test": x[te],
        "y_test": y[te],
        "feature_names": np.array(d.feature_names),
    }


@pytest.fixture(scope="session")
def tabular_mlp(breast_cancer: dict[str, torch.Tensor]) -> nn.Module:
    """A small MLP trained on the breast-cancer fixture, in eval mode."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 2))
    return _fit(m, breast_cancer["x_train"], breast_cancer["y_train"], epochs=30, lr=3e-3)


#: the longest tests, started first so that the other worker works through the rest of
#: the suite meanwhile (with ``pytest -n 2``, a long test drawn last sets the wall time)
_LONGEST_FIRST = ("test_readme.py::test_readme_runs_in_order",)


#: end-to-end files (the dashboard through AppTest, the examples, fuzzing, multi-process
#: runs, export round trips): marked ``integration``, left out of ``scripts/test.sh --quick``
_INTEGRATION = (
    "test_app_", "test_examples.py", "test_fuzz_inputs.py", "test_audit_distributed.py",
    "test_trainer_ddp.py", "test_export_roundtrip.py", "test_trainer_resume_kill.py",
    "test_audit_sources.py", "test_real_servers.py", "test_sagemaker.py",
)  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for it in items:
        if it.nodeid.split("/")[-1].startswith(_INTEGRATION):
            it.add_marker(pytest.mark.integration)
    first = [it for it in items if it.nodeid.endswith(_LONGEST_FIRST)]
    if first:
        items[:] = first + [it for it in items if it not in first]


# --------------------------------------------------------------- HTTP endpoint tests
@pytest.fixture
def start():
    """``start(fn, **serve_options)``: a prediction server on 127.0.0.1
    (:func:`xrobust.models.serving.serve`); every one started is closed at the end."""
    from xrobust.models import serving

    servers = []

    def _start(fn, **kw):
        s = serving.serve(fn, **kw)
        servers.append(s)
        return s

    yield _start
    for s in servers:
        s.close()


@pytest.fixture
def clients():
    """A list to put endpoint classifiers in; each is closed at the end."""
    made: list = []
    yield made
    for c in made:
        c.close()
