"""Library calls get the CLI's speed settings (issue 19 item 3): ``import xrobust`` sets
OMP_WAIT_POLICY=PASSIVE unless the user chose or torch is already loaded; ``audit()`` and an
attack's ``run`` on the CPU tune glibc's allocator once, unless malloc was configured."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xrobust.device import allocator_configured_by_user

_POLICY = """
import os, sys
if sys.argv[1] == "torch-first":
    import torch
import xrobust
print("POLICY", os.environ.get("OMP_WAIT_POLICY"), xrobust._OMP_POLICY_SET)
"""

_ALLOC = """
import sys, torch
import xrobust.device as d
from xrobust.attacks import FGSM
mode = sys.argv[1]
if mode == "off":
    d.set_auto_tune_allocator(False)
if mode == "cuda":
    print("CUDA", d.maybe_tune_allocator("cuda"), d._AUTO["done"])
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
FGSM(model, eps=0.1, bounds=(0.0, 1.0)).run(torch.rand(5, 4), torch.tensor([0, 1, 2, 0, 1]))
print("TUNED", d._AUTO["done"], d.maybe_tune_allocator("cpu"))
"""


def _env(**extra: str) -> dict[str, str]:
    drop = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "XROBUST_TUNE_MALLOC",
            "GLIBC_TUNABLES", "LD_PRELOAD")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MALLOC_")}
    env.update(extra)
    return env


def _run(script: str, arg: str, **extra: str) -> str:
    r = subprocess.run(
        [sys.executable, "-c", script, arg],
        env=_env(**extra),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("arg", "extra", "want"),
    [
        ("plain", {}, "POLICY PASSIVE True"),
        ("plain", {"OMP_WAIT_POLICY": "ACTIVE"}, "POLICY ACTIVE False"),
        ("plain", {"GOMP_SPINCOUNT": "1000"}, "POLICY None False"),
        ("torch-first", {}, "POLICY None False"),  # too late to matter: left alone
    ],
)
def test_import_sets_passive_waiting_unless_chosen_or_too_late(arg, extra, want) -> None:
    assert _run(_POLICY, arg, **extra) == want


def test_allocator_configured_by_user() -> None:
    assert allocator_configured_by_user({}) is None
    assert allocator_configured_by_user({"PATH": "/bin"}) is None
    assert allocator_configured_by_user({"MALLOC_ARENA_MAX": "2"}) == "MALLOC_ARENA_MAX"
    assert allocator_configured_by_user({"MALLOC_TRIM_THRESHOLD_": "0"}) is not None
    assert allocator_configured_by_user({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"})
    assert allocator_configured_by_user({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX"}) is None
    assert allocator_configured_by_user({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"})
    assert allocator_configured_by_user({"LD_PRELOAD": "/usr/lib/libfoo.so"}) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
@pytest.mark.parametrize(
    ("arg", "extra", "want"),
    [
        ("plain", {}, "TUNED True False"),  # the attack's run tuned it; once per process
        ("plain", {"MALLOC_MMAP_THRESHOLD_": "65536"}, "TUNED True False"),
        ("plain", {"XROBUST_TUNE_MALLOC": "0"}, "TUNED False False"),
        ("off", {}, "TUNED False False"),
        ("cuda", {}, "TUNED True False"),
    ],
)
def test_attack_runs_tune_the_allocator_once_unless_configured(arg, extra, want) -> None:
    out = _run(_ALLOC, arg, **extra)
    if arg == "plain" and not extra:
        import platform

        if platform.libc_ver()[0] != "glibc":
            pytest.skip("not glibc")
    assert out == want


def test_user_malloc_settings_are_kept() -> None:
    """With MALLOC_* set, the automatic tuning is a no-op (done, not applied)."""
    out = subprocess.run(
        [sys.executable, "-c",
         "import xrobust.device as d; print(d.maybe_tune_allocator('cpu'), d._AUTO['done'])"],
        env=_env(MALLOC_ARENA_MAX="2"), capture_output=True, text=True, timeout=120,
    ).stdout.split()  # fmt: skip
    assert out == ["False", "True"]
