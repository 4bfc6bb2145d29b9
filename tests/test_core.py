"""Registry, device resolution, atomic writes, CLI skeleton."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from xrobust import __version__
from xrobust._io import atomic_write_json, atomic_write_text
from xrobust.cli import main
from xrobust.device import amp_dtype, resolve_device
from xrobust.errors import ConfigError
from xrobust.registry import Registry


def test_registry_register_get_list_and_suggest() -> None:
    r: Registry[type] = Registry("widget")

    @r.register("spanner")
    class Spanner: ...

    @r.register("hammer")
    class Hammer: ...

    assert r.get("spanner") is Spanner
    assert r.get("SPANNER") is Spanner
    assert r.list() == ["hammer", "spanner"]
    assert r.list("h*") == ["hammer"]
    assert "hammer" in r and "saw" not in r
    with pytest.raises(ConfigError, match="Did you mean 'spanner'"):
        r.get("spaner")
    with pytest.raises(ValueError, match="already registered"):
        r.register("hammer")(Spanner)


def test_resolve_device() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu-ish")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_amp_is_off_on_cpu() -> None:
    assert amp_dtype(torch.device("cpu"), True) is None
    assert amp_dtype(torch.device("cpu"), False) is None


def test_atomic_write(tmp_path) -> None:
    p = atomic_write_json(tmp_path / "a" / "b.json", {"x": 1})
    assert json.loads(p.read_text()) == {"x": 1}
    atomic_write_text(p, "hello")
    assert p.read_text() == "hello"
    assert [f.name for f in p.parent.iterdir()] == ["b.json"]  # no temporary left behind
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "nan.json", {"x": float("nan")})
    assert not (tmp_path / "nan.json").exists()


def test_cli_version(capsys) -> None:
    assert main(["--version"]) == 0  # main() returns argparse's exit status
    assert __version__ in capsys.readouterr().out


def test_atomic_write_uses_normal_permissions(tmp_path) -> None:
    import os
    import stat

    p = atomic_write_text(tmp_path / "r.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask


def test_python_dash_m(tmp_path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "xrobust", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and __version__ in out.stdout


_HEAP_SCRIPT = """
import sys, torch
from xrobust.device import tune_allocator
applied = tune_allocator() if sys.argv[1] == "tuned" else None
t = torch.empty(16 << 20)  # 64 MiB: above glibc's largest dynamic mmap threshold
ptr = t.data_ptr()
label = "anonymous"
for line in open("/proc/self/maps"):
    lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
    if lo <= ptr < hi:
        label = line.split()[-1] if len(line.split()) > 5 else "anonymous"
print(applied, label)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_tune_allocator_serves_large_tensors_from_the_heap() -> None:
    # tuned, large activation buffers come from the (kept) heap instead of fresh mmaps
    # that page-fault on every pass
    def where(mode: str) -> list[str]:
        return subprocess.run(
            [sys.executable, "-c", _HEAP_SCRIPT, mode],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.split()

    applied, tuned = where("tuned")
    if applied != "True":
        pytest.skip("not a glibc system: mallopt unavailable")
    assert tuned == "[heap]"
    assert where("default")[1] != "[heap]"


def test_registry_names_have_one_normalisation() -> None:
    """register, get, __contains__ and unregister agree on one spelling: a name with a
    hyphen registers and is found again (it used to raise "Did you mean 'foo-bar'?")."""
    import pytest as _pytest

    from xrobust.errors import ConfigError
    from xrobust.registry import Registry

    r: Registry[object] = Registry("widget")
    obj = object()
    r.register("Foo-Bar")(obj)
    assert r.get("foo-bar") is obj and r.get("FOO_BAR") is obj and "foo-bar" in r
    assert r.list() == ["foo_bar"]
    with _pytest.raises(ValueError, match="already registered"):
        r.register("foo_bar")(object())
    r.unregister("foo-bar")
    assert "foo_bar" not in r and len(r) == 0
    with _pytest.raises(ConfigError, match="unknown widget"):
        r.get("foo-bar")
