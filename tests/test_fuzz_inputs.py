"""Hostile inputs for every loader and parser (hypothesis, derandomised, bounded).

Each call must either succeed with a valid result or raise one of xrobust's errors
(:class:`~xrobust.errors.XRobustError`): no other exception, no allocation over a stated cap,
and nothing written outside ``--out``.

The cap: during these tests the data cap (``xrobust.data._base.MAX_DATA_BYTES``) is lowered
to 32 MiB and every call must stay within 96 MiB of resident memory growth (peak RSS, read
from ``/proc/self/status`` after resetting it through ``/proc/self/clear_refs``; on systems
without those files, numpy's allocations as traced by ``tracemalloc``).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xrobust.data import _base
from xrobust.data.spec import DatasetBundle
from xrobust.errors import XRobustError

DATA_CAP = 32 << 20
RSS_CAP = 96 << 20
FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)


@pytest.fixture(autouse=True)
def _small_cap(monkeypatch) -> None:
    monkeypatch.setattr(_base, "MAX_DATA_BYTES", DATA_CAP)


def _rss_peak_reset() -> int | None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status("VmRSS")
    except OSError:
        return None


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(key)


@contextlib.contextmanager
def _bounded(what: str) -> Iterator[None]:
    """Fail when the block's peak memory grows by more than RSS_CAP."""
    import tracemalloc

    base = _rss_peak_reset()
    if base is None:
        tracemalloc.start()
    try:
        yield
    finally:
        if base is None:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        else:
            peak = _status("VmHWM") - base
        assert peak <= RSS_CAP, f"{what}: memory grew by {peak / 2**20:.0f} MiB"


STATS: Counter[str] = Counter()


def _call(fn: Callable[[], Any], what: str) -> Any:
    """Run ``fn``: a result, or None when it raised an XRobustError; anything else fails."""
    with _bounded(what):
        try:
            out = fn()
        except XRobustError as exc:
            if os.environ.get("FUZZ_DEBUG"):
                print("REFUSED", what, exc)
            STATS["refused"] += 1
            return None
    STATS["ok"] += 1
    return out


@pytest.fixture
def both_outcomes() -> Iterator[None]:
    """The strategies must reach valid inputs and refused ones (else they test nothing)."""
    STATS.clear()
    yield
    assert STATS["ok"] > 0 and STATS["refused"] > 0, dict(STATS)


def _valid_bundle(b: Any) -> None:
    assert isinstance(b, DatasetBundle)
    for ds in (b.train, b.test):
        x, y = ds.tensors if hasattr(ds, "tensors") else (None, None)
        if x is None:
            continue
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert tuple(x.shape[1:]) == tuple(b.spec.input_shape)
        assert torch.isfinite(x).all()
        assert int(y.min()) >= 0 and int(y.max()) < b.spec.num_classes
    assert len(b.spec.class_names) == b.spec.num_classes


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")}


# ----------------------------------------------------------------------------- npz

_dtypes = st.sampled_from(["<f4", "<f8", "|u1", "<i8", "|b1", "<U3", "<c8", ">f4", "<f2"])


@st.composite
def _npz_bytes(draw: Any) -> bytes:
    buf = io.BytesIO()
    kind = draw(st.sampled_from(["valid", "header", "mutate", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=600))
    arrays: dict[str, np.ndarray] = {}
    n = draw(st.integers(0, 40))
    shape = draw(
        st.sampled_from([(n, 4), (n, 8, 8), (n, 3, 6, 6), (n, 6, 6, 3), (n,), (n, 2, 2, 2, 2)])
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "valid":  # well-formed data: only the layout and dtype vary
        n = draw(st.integers(12, 40))
        shape = draw(st.sampled_from([(n, 4), (n, 8, 8), (n, 3, 6, 6), (n, 6, 6, 3)]))
        arrays["x"] = (rng.random(shape) * 0.99).astype(
            draw(st.sampled_from(["<f4", "<f8", ">f4"]))
        )
        arrays["y"] = (np.arange(n) % 3).astype(draw(st.sampled_from(["<i8", "<f4", "|u1"])))
    else:
        arrays["x"] = (rng.random(shape) * draw(st.sampled_from([1, 255, 1e30]))).astype(
            draw(_dtypes)
        )
        arrays["y"] = rng.integers(
            draw(st.sampled_from([-2, 0])), draw(st.integers(1, 12)), n
        ).astype(draw(st.sampled_from(["<i8", "<f4", "|u1", "<i4"])))
    if kind != "valid" and draw(st.booleans()):
        arrays[draw(st.sampled_from(["class_names", "feature_names", "x_train", "junk"]))] = (
            np.array(draw(st.lists(st.text(max_size=4), max_size=5)))
        )
    with zipfile.ZipFile(buf, "w", compression=draw(st.sampled_from([0, 8]))) as zf:
        for k, a in arrays.items():
            b = io.BytesIO()
            np.save(b, a)
            data = b.getvalue()
            if kind == "header" and k == "x":
                h = io.BytesIO()
                big = tuple(draw(st.lists(st.integers(0, 10**7), min_size=1, max_size=4)))
                np.lib.format.write_array_header_1_0(
                    h, {"descr": a.dtype.str, "fortran_order": False, "shape": big}
                )
                data = h.getvalue() + data[-draw(st.integers(0, 64)) :]
            zf.writestr(f"{k}.npy", data)
    out = bytearray(buf.getvalue())
    if kind == "mutate" and out:
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(out) - 1))
            out[i] = draw(st.integers(0, 255))
        out = out[: draw(st.integers(0, len(out)))]
    return bytes(out)


@FUZZ
@given(data=_npz_bytes(), size=st.sampled_from([None, 4, 9, (3, 5)]))
def test_npz(both_outcomes, tmp_path_factory, data: bytes, size: Any) -> None:
    from xrobust.data import load_dataset

    d = tmp_path_factory.mktemp("npz")
    f = d / "f.npz"
    f.write_bytes(data)
    before = _snapshot(d)
    b = _call(lambda: load_dataset(str(f), size=size), "npz")
    if b is not None:
        _valid_bundle(b)
    assert _snapshot(d) == before


# ----------------------------------------------------------------------------- CSV

_cell = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(
        ["", " ", "a", "nan", "inf", '"1,5"', "1e400", "０", "\x00", "\u2028", "label"]
    ),
)


@st.composite
def _csv_text(draw: Any) -> str:
    if draw(st.booleans()):  # a well-formed table, with hostile details sometimes
        n = draw(st.integers(4, 40))
        rows = [
            f"{draw(st.floats(-1e6, 1e6)):.6g},{draw(st.integers(-5, 5))},{'xyz'[i % 3]}"
            for i in range(n)
        ]
        last = draw(st.sampled_from(["", "1,2,x", "1,,x", ",,", "1,2"]))
        return "\n".join(["a,b,label", *rows, last])
    ncol = draw(st.integers(1, 5))
    header = draw(
        st.lists(
            st.sampled_from(["a", "b", "label", "target", "Label", "a", " ", "é"]),
            min_size=ncol,
            max_size=ncol,
        )
    )
    rows = draw(st.lists(st.lists(_cell, min_size=0, max_size=ncol + 1), max_size=30))
    delim = draw(st.sampled_from([",", ";", "\t", "|"]))
    lines = [delim.join(header)] + [delim.join(r) for r in rows]
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines)


@FUZZ
@given(text=_csv_text(), target=st.sampled_from([None, "label", "b", "nope"]))
def test_csv(both_outcomes, tmp_path_factory, text: str, target: str | None) -> None:
    from xrobust.data import load_dataset

    d = tmp_path_factory.mktemp("csv")
    f = d / "t.csv"
    f.write_text(text, encoding="utf-8", errors="surrogatepass")
    b = _call(lambda: load_dataset(str(f), target=target), "csv")
    if b is not None:
        _valid_bundle(b)


@FUZZ
@given(raw=st.binary(max_size=400))
def test_csv_bytes(tmp_path_factory, raw: bytes) -> None:
    from xrobust.data import load_dataset

    f = tmp_path_factory.mktemp("csvb") / "t.csv"
    f.write_bytes(raw)
    b = _call(lambda: load_dataset(str(f)), "csv bytes")
    if b is not None:
        _valid_bundle(b)


# ----------------------------------------------------------------------------- IDX


@st.composite
def _idx_pair(draw: Any) -> tuple[bytes, bytes]:
    n = draw(st.integers(0, 30))
    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x07]))
    ndim = draw(st.integers(0, 4))
    dims = draw(st.lists(st.integers(0, 2**31), min_size=ndim, max_size=ndim))
    honest = draw(st.booleans())
    if honest:  # a well-formed pair (any element type), labels 0..2
        n = draw(st.integers(6, 30))
        dims, ndim = [n, 6, 6], 3
    head = bytes([0, 0, code, ndim]) + np.array(dims, ">u4").tobytes()
    itemsize = {0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}.get(code, 1)
    body = bytes(n * 36 * itemsize) if honest else draw(st.binary(max_size=2000))
    values = (
        [i % 3 for i in range(n)]
        if honest
        else draw(st.lists(st.integers(0, 255), min_size=n, max_size=n))
    )
    labels = bytes([0, 0, 0x08, 1]) + np.array([n], ">u4").tobytes() + bytes(values)
    img = head + body
    if draw(st.booleans()):
        img = gzip.compress(img)
        if draw(st.booleans()):
            img = img[: draw(st.integers(0, len(img)))]
    return img, labels


@FUZZ
@given(pair=_idx_pair())
def test_idx(both_outcomes, tmp_path_factory, pair: tuple[bytes, bytes]) -> None:
    from xrobust.data import load_dataset

    d = tmp_path_factory.mktemp("idx")
    (d / "train-images-idx3-ubyte").write_bytes(pair[0])
    (d / "train-labels-idx1-ubyte").write_bytes(pair[1])
    b = _call(lambda: load_dataset(str(d)), "idx")
    if b is not None:
        _valid_bundle(b)


def test_idx_gzip_bomb_is_bounded(tmp_path) -> None:
    d = tmp_path / "bomb"
    d.mkdir()
    n = (DATA_CAP * 2) // 64
    head = bytes([0, 0, 0x08, 3]) + np.array([n, 8, 8], ">u4").tobytes()
    comp = zlib_gzip(head, n * 64)
    (d / "train-images-idx3-ubyte.gz").write_bytes(comp)
    assert (
        _call(lambda: __import__("xrobust.data", fromlist=["x"]).load_dataset(str(d)), "gz") is None
    )


def zlib_gzip(head: bytes, zeros: int) -> bytes:
    """gzip of ``head`` + ``zeros`` zero bytes, streamed (never holds the inflated data)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz:
        gz.write(head)
        block = bytes(1 << 20)
        for _ in range(zeros // len(block)):
            gz.write(block)
    return buf.getvalue()


# ----------------------------------------------------------------------------- image folders


@st.composite
def _folder(draw: Any) -> list[tuple[str, str, bytes]]:
    from PIL import Image

    files = []
    if draw(st.booleans()):  # a valid folder, sometimes with one hostile file
        for c in ("a", "b"):
            for i in range(3):
                buf = io.BytesIO()
                Image.new("RGB", (6, 5), color=(i * 40, 0, 0)).save(buf, format="PNG")
                files.append((c, f"{i}.png", buf.getvalue()))
        if draw(st.booleans()):
            files.append(("b", "x.png", draw(st.binary(max_size=100))))
        return files
    for c in draw(
        st.lists(
            st.sampled_from(["a", "b", "c", ".hidden", "d d"]), min_size=0, max_size=3, unique=True
        )
    ):
        for i in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(["png", "jpg", "random", "truncated", "mode"]))
            buf = io.BytesIO()
            w, h = draw(st.integers(1, 12)), draw(st.integers(1, 12))
            mode = (
                draw(st.sampled_from(["L", "RGB", "RGBA", "P", "I;16", "1"]))
                if kind == "mode"
                else "RGB"
            )
            img = Image.new(mode, (w, h))
            fmt = "JPEG" if kind == "jpg" and mode in ("L", "RGB") else "PNG"
            img.save(buf, format=fmt)
            data = buf.getvalue()
            if kind == "random":
                data = draw(st.binary(max_size=200))
            elif kind == "truncated":
                data = data[: draw(st.integers(0, len(data)))]
            files.append((c, f"{i}.{'jpg' if fmt == 'JPEG' else 'png'}", data))
    return files


@FUZZ
@given(files=_folder(), size=st.sampled_from([None, 5, (4, 7)]))
def test_image_folder(both_outcomes, tmp_path_factory, files, size) -> None:
    from xrobust.data import load_dataset

    d = tmp_path_factory.mktemp("img")
    for c, name, data in files:
        (d / c).mkdir(exist_ok=True)
        (d / c / name).write_bytes(data)
    b = _call(lambda: load_dataset(str(d), size=size), "image folder")
    if b is not None:
        _valid_bundle(b)


# ----------------------------------------------------------------------------- checkpoints

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=8,
)
_PATHS = [
    ("architecture",), ("arch_kwargs",), ("arch_kwargs", "hidden"), ("dataset",),
    ("dataset", "input_shape"), ("dataset", "num_classes"), ("dataset", "class_names"),
    ("dataset", "bounds"), ("dataset", "mean"), ("dataset", "std"), ("dataset", "modality"),
    ("dataset", "feature_names"), ("dataset", "extra"), ("class_names",), ("normalization",),
    ("weights",), ("weights", "file"), ("weights", "sha256"), ("training",),
    ("training", "completed"), ("format_version",), ("integrity",), ("metrics",),
]  # fmt: skip


@pytest.fixture(scope="module")
def run_template(tmp_path_factory) -> Path:
    from xrobust.data.spec import DatasetSpec
    from xrobust.models import build_model, save_checkpoint

    spec = DatasetSpec(
        "t", "tabular", (4,), 3, ("a", "b", "c"), (-3.0, 3.0), feature_names=tuple("wxyz")
    )
    d = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(build_model("mlp", spec, hidden=[5]), d, spec=spec)
    return d


@FUZZ
@given(
    path=st.sampled_from(_PATHS),
    value=_json,
    seal=st.booleans(),
    damage=st.sampled_from(["none", "json-bytes", "weights-bytes", "delete-key"]),
    raw=st.binary(max_size=64),
)
def test_checkpoint(
    both_outcomes, tmp_path_factory, run_template, path, value, seal, damage, raw
) -> None:
    import shutil

    from xrobust.models import load_run
    from xrobust.models.checkpoint import _seal

    d = tmp_path_factory.mktemp("ck") / "run"
    shutil.copytree(run_template, d)
    meta = json.loads((d / "model.json").read_text())
    node = meta
    for k in path[:-1]:
        node = node.setdefault(k, {}) if isinstance(node.get(k), dict) else node
    if damage == "delete-key":
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    try:
        text = json.dumps(_seal(meta) if seal else meta)
    except ValueError:  # a non-finite float: not sealable, written as Python's json would
        text = json.dumps(meta)
    if damage == "json-bytes":
        text = text[: len(text) // 2] + raw.decode("latin-1")
    (d / "model.json").write_text(text, encoding="utf-8", errors="surrogatepass")
    if damage == "weights-bytes":
        w = bytearray((d / "model.safetensors").read_bytes())
        w[: len(raw)] = raw
        (d / "model.safetensors").write_bytes(bytes(w))
    before = _snapshot(d)
    run = _call(lambda: load_run(d), "checkpoint")
    if run is not None:
        x = torch.zeros(2, *run.spec.input_shape)
        assert run.model(x).shape == (2, run.spec.num_classes)
    assert _snapshot(d) == before


# ----------------------------------------------------------------------------- TOML


@st.composite
def _toml(draw: Any) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    keys = ["seed", "device", "batch_size", "amp", "[clean]", "n", "ece_bins", "[adversarial]",
            "attacks", "norms", "eps.linf", "eps.l2", "steps", "restarts", "headline_eps.linf",
            "[corruption]", "severities", "[requirements]", "max_ece", "min_clean_accuracy",
            "[[requirements.robust]]", "attack", "norm", "eps", "min_accuracy", "[sanity]",
            "enabled", "[explanations]", "methods", "bogus"]  # fmt: skip
    vals = ["1", "-1", "0", "1e400", "nan", "inf", "true", '"pgd"', '["fgsm", "pgd"]', '["l3"]',
            "[0.1, 0.2]", "[-1]", "[]", "{a = 1}", "99999999999999999999", '"x"', "[1, 3, 9]",
            "0.5", '"worst"', '"linf"']  # fmt: skip
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        k = draw(st.sampled_from(keys))
        lines.append(k if k.startswith("[") else f"{k} = {draw(st.sampled_from(vals))}")
    return "\n".join(lines).encode()


@FUZZ
@given(data=_toml())
def test_toml(both_outcomes, tmp_path_factory, data: bytes) -> None:
    from xrobust.audit import load_config

    f = tmp_path_factory.mktemp("toml") / "a.toml"
    f.write_bytes(data)
    cfg = _call(lambda: load_config(f), "toml")
    if cfg is not None:
        cfg.validate()
        steps = cfg.to_dict()["adversarial"]["steps"]  # None: each attack's own default
        assert steps is None or steps >= 1


# ----------------------------------------------------------------------------- report.json


@pytest.fixture(scope="module")
def report_dict(tmp_path_factory) -> dict:
    from xrobust.audit import AuditConfig, audit
    from xrobust.data import load_dataset
    from xrobust.models import build_model

    ds = load_dataset("blobs")
    torch.manual_seed(0)
    model = build_model("mlp", ds.spec, hidden=[8])
    cfg = AuditConfig.from_dict(
        {"adversarial": {"n": 8, "attacks": ["fgsm"], "norms": ["linf"]},
         "corruption": {"enabled": False}, "explanations": {"enabled": False},
         "sanity": {"enabled": False}, "requirements": {"min_clean_accuracy": 0.5}}
    )  # fmt: skip
    rep = audit(model, ds, cfg)
    out = tmp_path_factory.mktemp("rep")
    rep.save(out)
    return json.loads((out / "report.json").read_text())


def _paths(d: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(d, dict):
        for k, v in d.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d[:3]):
            out += _paths(v, (*prefix, i))
    return out


@FUZZ
@given(
    pick=st.integers(0, 10**6), value=_json, fmt=st.sampled_from(["html", "md", "junit", "json"])
)
def test_report_json(both_outcomes, tmp_path_factory, report_dict, pick, value, fmt) -> None:
    from xrobust.cli import main

    d = json.loads(json.dumps(report_dict))
    paths = [p for p in _paths(d) if p]
    path = paths[pick % len(paths)]
    node = d
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    folder = tmp_path_factory.mktemp("rj")
    f = folder / "report.json"
    f.write_text(json.dumps(d))
    out = folder / "out" / f"r.{fmt}"
    with _bounded("report"):
        rc = main(["report", str(f), "--format", fmt, "--out", str(out)])
    assert rc in (0, 1, 2, 3)
    STATS["refused" if rc == 2 else "ok"] += 1
    assert {p.name for p in folder.rglob("*") if p.is_file()} <= {"report.json", out.name}


# ----------------------------------------------------------------------------- CLI flag values


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from xrobust.cli import main

    out = tmp_path_factory.mktemp("tiny") / "run"
    assert main(["train", "--data", "blobs", "--model", "mlp", "--epochs", "1", "--out",
                 str(out), "--no-progress"]) == 0  # fmt: skip
    return out


_flag_value = st.one_of(
    st.sampled_from(["0", "-1", "1", "2", "1e9", "nan", "inf", "-0", "0:3", "3:1", "a:b", ",",
                     "pgd", "linf", "x=1", "n_steps=-3", "n_steps=2", "bogus", "", "1,2",
                     "pgd:linf:0.1:0.5", "apgd:l3:x:y", "../../x", "\x00"]),
    st.text(max_size=6),
)  # fmt: skip
_COMMANDS = {
    "attack": (["--eps", "--steps", "--limit", "--norm", "--attack", "--batch-size",
                "--target-class", "--restarts", "--step-size", "--seed"],
               ["--eps", "0.05", "--steps", "2", "--limit", "4"]),
    "explain": (["--samples", "--param", "--method", "--target-class", "--normalise", "--seed"],
                ["--method", "saliency", "--samples", "0:2"]),
    "audit": (["--skip", "--n", "--attacks", "--norms", "--eps-linf", "--require", "--steps",
               "--max-ece", "--batch-size", "--methods"],
              ["--n", "4", "--attacks", "fgsm", "--norms", "linf", "--skip",
               "corruption,explanations,sanity"]),
}  # fmt: skip


@settings(FUZZ, max_examples=40)
@given(
    command=st.sampled_from(sorted(_COMMANDS)),
    picks=st.lists(st.tuples(st.integers(0, 100), _flag_value), min_size=1, max_size=2),
)
def test_cli_flag_values(both_outcomes, tmp_path_factory, tiny_run, command, picks) -> None:
    from xrobust.cli import main

    flags, base = _COMMANDS[command]
    work = tmp_path_factory.mktemp("cli")
    out = work / "out"
    out_arg = {"attack": out / "adv.npz", "explain": out / "fig.png", "audit": out / "rep"}[command]
    argv = [command, "--model", str(tiny_run), *base, "--out", str(out_arg)]
    for i, v in picks:
        argv += [flags[i % len(flags)], v]
    if command == "audit":
        argv.append("--no-progress")
    run_before = _snapshot(tiny_run)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        with _bounded(" ".join(argv)):
            rc = main(argv)
    finally:
        os.chdir(cwd)
    assert rc in (0, 1, 2), argv
    STATS["refused" if rc == 2 else "ok"] += 1
    written = [p for p in work.rglob("*") if p.is_file()]
    assert all(out in p.parents for p in written), (argv, written)
    assert _snapshot(tiny_run) == run_before


def _png_header_only(w: int, h: int) -> bytes:
    import struct
    import zlib

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(64)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [3000, 12000, 60000])
def test_image_declaring_huge_dimensions_is_refused_before_decoding(tmp_path, side) -> None:
    from xrobust.data import load_dataset

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        (tmp_path / c / "0.png").write_bytes(_png_header_only(side, side))
        (tmp_path / c / "1.png").write_bytes(_png_header_only(4, 4))
    assert _call(lambda: load_dataset(str(tmp_path), size=8), "png bomb") is None
