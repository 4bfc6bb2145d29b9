"""Where the dashboard's models and data come from.

:data:`MODEL_SOURCES` is the one list of model sources: the sidebar's radio and the compare
page read it, so a new source (an ONNX file, an endpoint URL, once ``xrobust.models`` has
them) plugs in by adding one :class:`ModelSource` here. Each source's ``pick`` renders its
widgets and returns a :class:`ModelHandle`, or None (with an ``st.error`` saying what to
do) when nothing usable was given. Uploads are size-limited and read with the library's
no-pickle loaders.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from xrobust.errors import XRobustError

__all__ = [
    "DATA_SOURCES",
    "MODEL_SOURCES",
    "DataHandle",
    "ModelHandle",
    "ModelSource",
    "max_upload_bytes",
    "pick_data",
    "pick_model",
]

ENV_MODEL = "XROBUST_APP_MODEL"
ENV_DATA = "XROBUST_APP_DATA"
ENV_MAX_UPLOAD_MB = "XROBUST_APP_MAX_UPLOAD_MB"
_DEFAULT_MAX_MB = 50.0


@dataclass
class ModelHandle:
    """A loaded model and what the pages need to know about it.

    Attributes:
        model: the torch module (eval mode), returning logits.
        spec: the dataset spec it was trained on (input shape, classes, bounds).
        source: the source's name in :data:`MODEL_SOURCES`.
        label: a short human description (shown in the sidebar).
        key: the model's identity for caches (source, path or upload, weights hash).
        differentiable: whether gradient attacks and explainers can run.
        default_data: a built-in dataset that fits it, if known.
    """

    model: Any
    spec: Any
    source: str
    label: str
    key: str
    differentiable: bool = True
    default_data: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataHandle:
    """A loaded dataset bundle with its identity for caches."""

    bundle: Any
    key: str
    label: str


@dataclass(frozen=True)
class ModelSource:
    """One way to get a model: ``pick(prefix, preset)`` renders the widgets (keys start with
    ``prefix``) and returns a :class:`ModelHandle` or None."""

    name: str
    label: str
    pick: Callable[[str, str | None], ModelHandle | None]


def max_upload_bytes() -> int:
    """The upload limit (``XROBUST_APP_MAX_UPLOAD_MB``, default 50 MB)."""
    try:
        mb = float(os.environ.get(ENV_MAX_UPLOAD_MB, _DEFAULT_MAX_MB))
    except ValueError:
        mb = _DEFAULT_MAX_MB
    return int(mb * 1024 * 1024)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _too_big(name: str, size: int) -> bool:
    limit = max_upload_bytes()
    if size > limit:
        st.error(
            f"{name} is {size / 1e6:.1f} MB; the dashboard accepts files up to "
            f"{limit / 1e6:.1f} MB. Use a smaller file, or start the app with "
            "`xrobust app --max-upload-mb N`."
        )
        return True
    return False


def _upload_dir(digest: str) -> Path:
    d = Path(tempfile.gettempdir()) / "xrobust-app" / digest[:32]
    d.mkdir(parents=True, exist_ok=True)
    return d


def _handle_from_run(run: Any, source: str, label: str, key: str) -> ModelHandle:
    from xrobust.data import list_datasets

    name = run.spec.name
    return ModelHandle(
        model=run.model,
        spec=run.spec,
        source=source,
        label=label,
        key=key,
        differentiable=True,
        default_data=name if name in list_datasets() else None,
        metadata=dict(run.metadata),
    )


# ------------------------------------------------------------------ model sources
def _pick_demo(prefix: str, preset: str | None) -> ModelHandle | None:
    from xrobust.apps.dashboard import resources
    from xrobust.audit.demo import DEMOS

    names = list(DEMOS)
    want = preset.split(":", 1)[1] if preset and preset.startswith("demo:") else None
    index = names.index(want) if want in names else 0
    name = st.selectbox("Demo model", names, index=index, key=f"{prefix}demo")
    arch = DEMOS[name][0]
    try:
        if not resources.demo_is_trained(name):
            with st.status(f"Training the {name} demo model ({arch}) on first use...") as s:
                run = resources.demo_model(name)
                s.update(label=f"Trained the {name} demo model", state="complete")
        else:
            run = resources.demo_model(name)
    except XRobustError as exc:
        st.error(f"Could not load the demo model: {exc}")
        return None
    sha = run.metadata.get("weights", {}).get("sha256", "")
    return _handle_from_run(run, "demo", f"demo {name} ({arch})", f"demo:{name}:{sha}")


def _pick_run(prefix: str, preset: str | None) -> ModelHandle | None:
    from xrobust.apps.dashboard import resources

    default = preset if preset and not preset.startswith("demo") else ""
    path = st.text_input(
        "Run folder", value=default, key=f"{prefix}run", help="written by `xrobust train --out DIR`"
    )
    if not path.strip():
        st.info("Enter the folder written by `xrobust train --out DIR`.")
        return None
    p = Path(path.strip()).expanduser()
    try:
        from xrobust.models import read_metadata

        sha = read_metadata(p)["weights"]["sha256"]
        run = resources.run_model(str(p.resolve()), sha)
    except XRobustError as exc:
        st.error(f"{exc}. Give the folder written by `xrobust train --out DIR`.")
        return None
    return _handle_from_run(run, "run", f"run {p.name}", f"run:{p.resolve()}:{sha}")


def _is_pickle(data: bytes) -> bool:
    # a pickle stream starts with the PROTO opcode; torch.save writes a zip archive
    return data[:1] == b"\x80" or data[:2] == b"PK"


def _pick_upload(prefix: str, preset: str | None) -> ModelHandle | None:
    from xrobust.apps.dashboard import resources

    files = st.file_uploader(
        "model.safetensors and model.json",
        type=["safetensors", "json"],
        accept_multiple_files=True,
        key=f"{prefix}upload",
        help="the two files of a checkpoint written by `xrobust train` (no pickle is read)",
    )
    if not files:
        st.info("Upload the checkpoint's model.safetensors and model.json together.")
        return None
    for f in files:
        if _too_big(f.name, f.size):
            return None
    weights = [f for f in files if f.name.lower().endswith(".safetensors")]
    metas = [f for f in files if f.name.lower().endswith(".json")]
    if len(weights) != 1 or len(metas) != 1:
        st.error(
            "Upload exactly one .safetensors file and one .json file (model.safetensors and "
            "model.json from the run folder)."
        )
        return None
    wbytes, mbytes = weights[0].getvalue(), metas[0].getvalue()
    if _is_pickle(wbytes):
        st.error(
            f"{weights[0].name} is a pickle / torch.save file, not safetensors; it is not "
            "loaded (unpickling can run code). Save the weights with "
            "`safetensors.torch.save_file(model.state_dict(), 'model.safetensors')` or "
            "`xrobust train --out DIR`."
        )
        return None
    digest = _sha256(wbytes + b"\0" + mbytes)
    folder = _upload_dir(digest)
    try:
        import json

        meta = json.loads(mbytes.decode("utf-8"))
        wname = meta.get("weights", {}).get("file", "model.safetensors")
        if not isinstance(wname, str) or Path(wname).name != wname:
            wname = "model.safetensors"
    except (UnicodeDecodeError, ValueError, AttributeError):
        wname = "model.safetensors"
    (folder / "model.json").write_bytes(mbytes)
    (folder / wname).write_bytes(wbytes)
    try:
        run = resources.run_model(str(folder), digest)
    except XRobustError as exc:
        st.error(
            f"The uploaded checkpoint was refused: {exc}. Upload the two files of a run "
            "folder written by `xrobust train`."
        )
        return None
    return _handle_from_run(run, "upload", f"upload {weights[0].name}", f"upload:{digest}")


#: every model source the dashboard offers, in the order shown
MODEL_SOURCES: list[ModelSource] = [
    ModelSource("demo", "Built-in demo", _pick_demo),
    ModelSource("run", "Run folder", _pick_run),
    ModelSource("upload", "Upload checkpoint", _pick_upload),
]


def pick_model(prefix: str = "m_", preset: str | None = None) -> ModelHandle | None:
    """The source radio and that source's widgets; returns the chosen model or None."""
    labels = [s.label for s in MODEL_SOURCES]
    index = 0
    if preset:
        name = "demo" if preset.startswith("demo") else "run"
        index = [s.name for s in MODEL_SOURCES].index(name)
    label = st.radio("Model source", labels, index=index, key=f"{prefix}source")
    src = MODEL_SOURCES[labels.index(label)]
    return src.pick(prefix, preset)


# ------------------------------------------------------------------ data sources
def _fits(bundle: Any, model: ModelHandle) -> bool:
    spec, want = bundle.spec, model.spec
    if tuple(spec.input_shape) != tuple(want.input_shape) or spec.num_classes != want.num_classes:
        st.error(
            f"The data ({spec.name}: inputs {tuple(spec.input_shape)}, {spec.num_classes} "
            f"classes) does not fit the model (inputs {tuple(want.input_shape)}, "
            f"{want.num_classes} classes). Choose the data the model was trained on "
            f"({want.name!r}) or a file with that input shape and class count."
        )
        return False
    return True


def _builtin(prefix: str, model: ModelHandle, preset: str | None) -> DataHandle | None:
    from xrobust.apps.dashboard import resources
    from xrobust.data import list_datasets

    names = list_datasets()
    want = preset if preset in names else model.default_data
    name = st.selectbox(
        "Dataset",
        names,
        index=names.index(want) if want in names else 0,
        key=f"{prefix}builtin_{model.spec.name}",
    )
    size = model.spec.input_shape[-1] if model.spec.modality == "image" else None
    try:
        bundle = resources.builtin_data(name, size)
    except XRobustError as exc:
        st.error(f"{exc}. Choose the dataset the model was trained on ({model.spec.name!r}).")
        return None
    if not _fits(bundle, model):
        return None
    return DataHandle(bundle, f"builtin:{name}:{size}", name)


def _target_input(prefix: str, suffix: str) -> str | None:
    if suffix not in (".csv", ".tsv"):
        return None
    t = st.text_input(
        "Target column",
        value="",
        key=f"{prefix}target",
        help="the label column (default: a column named 'target' or 'label')",
    )
    return t.strip() or None


def _file_bundle(path: str, target: str | None, model: ModelHandle, what: str) -> Any:
    from xrobust.apps.dashboard import resources

    try:
        bundle, notes = resources.file_data(path, target, os.path.getmtime(path))
    except XRobustError as exc:
        hint = (
            " Name the label column in 'Target column'."
            if path.lower().endswith((".csv", ".tsv"))
            else " An .npz needs arrays x and y (or x_train, y_train, x_test, y_test)."
        )
        st.error(f"{what} could not be read: {exc}.{hint}")
        return None
    for note in notes:
        st.warning(note)
    if not _fits(bundle, model):
        return None
    return bundle


def _upload_data(prefix: str, model: ModelHandle, preset: str | None) -> DataHandle | None:
    f = st.file_uploader(
        "Data file (.npz or .csv)", type=["npz", "csv", "tsv"], key=f"{prefix}data_upload"
    )
    if f is None:
        st.info("Upload an .npz (arrays x, y) or a CSV with a label column.")
        return None
    if _too_big(f.name, f.size):
        return None
    suffix = Path(f.name).suffix.lower()
    target = _target_input(prefix, suffix)
    data = f.getvalue()
    digest = _sha256(data)
    path = _upload_dir(digest) / f"data{suffix}"
    path.write_bytes(data)
    bundle = _file_bundle(str(path), target, model, f.name)
    if bundle is None:
        return None
    return DataHandle(bundle, f"upload:{digest}:{target}", f.name)


def _path_data(prefix: str, model: ModelHandle, preset: str | None) -> DataHandle | None:
    path = st.text_input("Data file on this machine", value=preset or "", key=f"{prefix}path")
    if not path.strip():
        return None
    p = Path(path.strip()).expanduser()
    if not p.is_file():
        st.error(f"{p}: no such file. Give an .npz or .csv file on the machine running the app.")
        return None
    if _too_big(p.name, p.stat().st_size):
        return None
    target = _target_input(prefix, p.suffix.lower())
    bundle = _file_bundle(str(p.resolve()), target, model, p.name)
    if bundle is None:
        return None
    return DataHandle(bundle, f"file:{p.resolve()}:{p.stat().st_mtime}:{target}", p.name)


#: data source label -> picker
DATA_SOURCES: dict[str, Callable[[str, ModelHandle, str | None], DataHandle | None]] = {
    "Built-in": _builtin,
    "Upload": _upload_data,
    "File path": _path_data,
}


def pick_data(
    model: ModelHandle, prefix: str = "d_", preset: str | None = None
) -> DataHandle | None:
    """The data source radio and its widgets; returns the chosen data or None."""
    from xrobust.data import list_datasets

    labels = list(DATA_SOURCES)
    index = 0
    if preset and preset not in list_datasets():
        index = labels.index("File path")
    label = st.radio("Data source", labels, index=index, key=f"{prefix}source", horizontal=True)
    return DATA_SOURCES[label](prefix, model, preset)
