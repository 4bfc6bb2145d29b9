"""Training state (weights, optimizer, scheduler, scaler, RNGs, counters) stored without pickle.

A nested Python structure (dicts with str/int keys, lists, tuples, tensors, numbers,
strings, None, bools) is split into a tensor table, written with safetensors, and a JSON
tree in which each tensor is replaced by a reference to its table key. Non-finite floats
and tuples are tagged so that the structure round-trips exactly.

On disk (inside ``<run>/state/``): ``state-<tag>.safetensors`` and ``state.json``; the JSON
names the tensor file and its SHA-256. A new tensor file is written first, then the JSON
is atomically replaced, then the older tensor file is removed, so a process killed at
any point leaves a consistent pair behind.

Example:
    >>> import tempfile, torch
    >>> from xrobust.trainer.state import load_state, save_state
    >>> d = tempfile.mkdtemp()
    >>> _ = save_state(d, {"w": torch.ones(2), "betas": (0.9, 0.99), 3: None}, tag="e1")
    >>> s = load_state(d)
    >>> s["betas"], s[3], s["w"].tolist()
    ((0.9, 0.99), None, [1.0, 1.0])
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch

from xrobust._io import atomic_write_bytes, atomic_write_text
from xrobust.errors import CheckpointError

__all__ = ["STATE_DIR", "has_state", "load_state", "save_state"]

STATE_DIR = "state"
_INDEX = "state.json"
_FORMAT = "xrobust-train-state"
_VERSION = 1


def _encode(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = path or "root"
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {"$t": key}
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"$f": repr(obj)}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, str | int) or isinstance(k, bool):
                raise TypeError(f"unsupported key type {type(k).__name__} at {path!r}")
            items.append([k, _encode(v, f"{path}/{k}", tensors)])
        return {"$d": items}
    if isinstance(obj, tuple):
        return {"$tu": [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # numpy scalar
        return _encode(obj.item(), path, tensors)
    raise TypeError(f"cannot store {type(obj).__name__} at {path!r} without pickle")


def _decode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if isinstance(node, dict):
        if "$t" in node:
            return tensors[node["$t"]]
        if "$f" in node:
            return float(node["$f"])
        if "$tu" in node:
            return tuple(_decode(v, tensors) for v in node["$tu"])
        if "$d" in node:
            return {k: _decode(v, tensors) for k, v in node["$d"]}
        raise ValueError(f"unknown node {list(node)}")
    return node


def save_state(run_dir: str | Path, state: dict[str, Any], tag: str) -> Path:
    """Write ``state`` under ``run_dir/state/`` (see the module docstring); returns the index path."""
    from safetensors.torch import save

    sdir = Path(run_dir) / STATE_DIR
    sdir.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, "", tensors)
    data = save(tensors) if tensors else save({"_empty": torch.zeros(0)})
    fname = f"state-{tag}.safetensors"
    atomic_write_bytes(sdir / fname, data)
    index = {
        "format": _FORMAT,
        "format_version": _VERSION,
        "tensors": {"file": fname, "sha256": hashlib.sha256(data).hexdigest()},
        "tree": tree,
    }
    out = atomic_write_text(sdir / _INDEX, json.dumps(index, allow_nan=False) + "\n")
    for old in sdir.glob("state-*.safetensors"):
        if old.name != fname:
            old.unlink(missing_ok=True)
    return out


def has_state(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a saved training state."""
    return (Path(run_dir) / STATE_DIR / _INDEX).is_file()


def load_state(run_dir: str | Path) -> dict[str, Any]:
    """Read the state saved by :func:`save_state`, verifying the tensor file's hash.

    Raises:
        CheckpointError: the state is missing, malformed or does not match its hash.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    sdir = Path(run_dir) / STATE_DIR
    ipath = sdir / _INDEX
    if not ipath.is_file():
        raise CheckpointError(f"no training state to resume from in {str(sdir)!r}")
    try:
        index = json.loads(ipath.read_text(encoding="utf-8"))
        fname = index["tensors"]["file"]
        digest = index["tensors"]["sha256"]
        tree = index["tree"]
        if index["format"] != _FORMAT or index["format_version"] != _VERSION:
            raise ValueError(f"unsupported format {index['format']!r} v{index['format_version']}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"training state {str(ipath)!r} is malformed: {exc}") from exc
    tpath = sdir / Path(str(fname)).name
    if not tpath.is_file():
        raise CheckpointError(f"training state tensors {str(tpath)!r} are missing")
    data = tpath.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise CheckpointError(
            f"training state tensors {str(tpath)!r} do not match their recorded SHA-256; "
            "refusing to resume from a modified or damaged state"
        )
    try:
        tensors = load(data)
        return _decode(tree, tensors)
    except (SafetensorError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"training state in {str(sdir)!r} is malformed: {exc}") from exc
