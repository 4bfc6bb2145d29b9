"""Where the dashboard's models and data come from.

:data:`MODEL_SOURCES` is the one list of model sources: the sidebar's radio and the compare
page read it, so a new source plugs in by adding one :class:`ModelSource` here. Each
source's ``pick`` renders its widgets and returns a :class:`ModelHandle`, or None (with an
``st.error`` saying what to do) when nothing usable was given. Uploads are size-limited and
read with the library's no-pickle loaders.

Black boxes (an ONNX file, an HTTP endpoint) declare no data of their own: their handle
comes back unbound (``spec`` None, a ``bind`` function), the data picker runs first, and
``bind(data)`` builds the classifier with the data's spec (``as_classifier(path_or_url,
spec=bundle.spec, ...)``), showing the library's error (both shapes named) on a mismatch.
Endpoint headers are mapped to environment variable *names*; their values are read by the
library for each request and never typed into, shown on, or cached by the page.
"""

from __future__ import annotations

import hashlib
import math
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
    "bind",
    "builtin_handle",
    "demo_handle",
    "max_upload_bytes",
    "max_upload_mb",
    "partner_demo",
    "pick_data",
    "pick_model",
    "short_url",
    "uploader",
]

ENV_MODEL = "XROBUST_APP_MODEL"
ENV_DATA = "XROBUST_APP_DATA"
ENV_MAX_UPLOAD_MB = "XROBUST_APP_MAX_UPLOAD_MB"
_DEFAULT_MAX_MB = 50.0
#: an example predict URL (TF Serving's REST port 8500 style, never the app's own 8501)
ENDPOINT_PLACEHOLDER = "http://127.0.0.1:8500/v1/models/NAME:predict"
#: the URL schemes of the endpoint source
ENDPOINT_SCHEMES = ("http://", "https://", "sagemaker://")


@dataclass
class ModelHandle:
    """A loaded model and what the pages need to know about it.

    Attributes:
        model: the torch module (eval mode), returning logits; None for a black box.
        classifier: what the pages analyse (``xrobust.models.Classifier``): a
            ``TorchClassifier`` around ``model``, an ONNX or endpoint classifier.
        spec: the dataset spec it was trained on (input shape, classes, bounds).
        source: the source's name in :data:`MODEL_SOURCES`.
        label: a short human description (shown in the sidebar).
        key: the model's identity for caches (source, path or upload, weights hash).
        differentiable: whether gradient attacks and explainers can run.
        default_data: a built-in dataset that fits it, if known.
        query_budget: rows each computation on a page may ask about (None: no limit).
        bind: for an unbound black box (``spec`` None), builds the bound handle from the
            chosen :class:`DataHandle` (None, with an ``st.error``, on a mismatch).
        notes: lines shown under the spec in the sidebar.
        short_label: ``label`` cut for legends and narrow places (URLs shortened);
            empty: ``label`` is short already.
    """

    model: Any
    spec: Any
    source: str
    label: str
    key: str
    differentiable: bool = True
    default_data: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    classifier: Any = None
    query_budget: int | None = None
    bind: Callable[[DataHandle], ModelHandle | None] | None = None
    notes: list[str] = field(default_factory=list)
    short_label: str = ""

    @property
    def short(self) -> str:
        """The label for legends (``short_label``, else ``label``)."""
        return self.short_label or self.label


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


def max_upload_mb() -> float:
    """The app's upload limit in MB (of 2**20 bytes, Streamlit's unit): from
    ``XROBUST_APP_MAX_UPLOAD_MB`` (``xrobust app --max-upload-mb``), else Streamlit's
    ``server.maxUploadSize`` when it was set, else 50; never above Streamlit's own limit
    (the server refuses bigger uploads)."""
    from streamlit import config

    server = float(config.get_option("server.maxUploadSize"))
    try:
        mb = float(os.environ[ENV_MAX_UPLOAD_MB])
    except (KeyError, ValueError):
        mb = server if config.is_manually_set("server.maxUploadSize") else _DEFAULT_MAX_MB
    return min(mb, server) if mb > 0 else min(_DEFAULT_MAX_MB, server)


def max_upload_bytes() -> int:
    """:func:`max_upload_mb` in bytes."""
    return int(max_upload_mb() * 1024 * 1024)


def uploader(label: str, **kwargs: Any) -> Any:
    """``st.file_uploader`` whose "Limit ... per file" is the app's own limit."""
    limit = max(1, math.ceil(max_upload_mb()))
    return st.file_uploader(label, max_upload_size=limit, **kwargs)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _too_big(name: str, size: int) -> bool:
    if size > max_upload_bytes():
        st.error(
            f"{name} is {size / 2**20:.1f} MB; the dashboard accepts files up to "
            f"{max_upload_mb():g} MB. Use a smaller file, or start the app with "
            "`xrobust app --max-upload-mb N`."
        )
        return True
    return False


def _upload_dir(digest: str) -> Path:
    d = Path(tempfile.gettempdir()) / "xrobust-app" / digest[:32]
    d.mkdir(parents=True, exist_ok=True)
    return d


def _handle_from_run(run: Any, source: str, label: str, key: str) -> ModelHandle:
    from xrobust.apps.dashboard import resources
    from xrobust.data import list_datasets

    name = run.spec.name
    return ModelHandle(
        model=run.model,
        classifier=resources.torch_classifier(run.model, key, run.spec),
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
    return demo_handle(name, run)


def demo_handle(name: str, run: Any = None) -> ModelHandle:
    """The handle of the demo model ``name`` (loaded, or trained on first use, when ``run``
    is not given): what the sidebar's demo source returns, also used by :mod:`preload`."""
    from xrobust.apps.dashboard import resources
    from xrobust.audit.demo import DEMOS

    run = resources.demo_model(name) if run is None else run
    sha = run.metadata.get("weights", {}).get("sha256", "")
    label = f"demo {name} ({DEMOS[name][0]})"
    handle = _handle_from_run(run, "demo", label, f"demo:{name}:{sha}")
    handle.metadata["demo"] = name
    return handle


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

    files = uploader(
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


# ------------------------------------------------------------------ black-box sources
def _budget_input(prefix: str) -> int | None:
    b = st.number_input(
        "Query budget (rows per computation, 0: none)",
        min_value=0,
        max_value=10_000_000,
        value=0,
        step=100,
        key=f"{prefix}budget",
        help="each attack, probe or audit on a page may ask the model about at most this "
        "many rows; what was finished when it runs out is shown, marked partial",
    )
    return int(b) or None


def _unbound(
    source: str, label: str, key: str, build: Callable[[DataHandle], ModelHandle | None]
) -> ModelHandle:
    return ModelHandle(
        model=None,
        spec=None,
        source=source,
        label=label,
        key=key,
        differentiable=False,
        bind=build,
    )


def _bound(
    base: ModelHandle, data: DataHandle, clf: Any, budget: int | None, notes: list[str]
) -> ModelHandle:
    from xrobust.data import list_datasets

    name = data.bundle.spec.name
    return ModelHandle(
        model=clf.module if clf.differentiable else None,
        spec=data.bundle.spec,
        source=base.source,
        label=base.label,
        key=f"{base.key}|data={data.key}|budget={budget}",
        differentiable=bool(clf.differentiable),
        default_data=name if name in list_datasets() else None,
        metadata=clf.describe(),
        classifier=clf,
        query_budget=budget,
        notes=notes,
    )


def _onnx2torch_available() -> bool:
    try:
        from xrobust.models.onnx import import_onnx2torch

        import_onnx2torch()
    except Exception:  # missing, or failing to import: the toggle is not offered
        return False
    return True


@dataclass
class _ModelFile:
    """A model file picked in the sidebar (uploaded into the app's folder, or a path)."""

    path: str
    digest: str
    name: str


def _model_file(
    prefix: str, preset: str | None, kind: str, title: str, hint: str
) -> _ModelFile | None:
    """The ``.{kind}`` file the user uploads or names by path (``xrobust app --model F``
    opens on the path), size-checked; None (with a message) until there is one."""
    suffix = f".{kind}"
    given = bool(preset and preset.lower().endswith(suffix))
    how = st.radio(
        title, ["Upload", "Path"], index=int(given), horizontal=True, key=f"{prefix}{kind}_how"
    )
    if how == "Upload":
        f = uploader(f"model{suffix}", type=[kind], key=f"{prefix}{kind}_upload")
        if f is None:
            st.info(f"Upload a {suffix} file ({hint}).")
            return None
        if _too_big(f.name, f.size):
            return None
        blob = f.getvalue()
        digest = _sha256(blob)
        path = _upload_dir(digest) / f"model{suffix}"
        if not path.exists():
            path.write_bytes(blob)
        return _ModelFile(str(path.resolve()), digest, f.name)
    text = st.text_input(
        f"{title} on this machine", value=preset if given else "", key=f"{prefix}{kind}_path"
    )
    if not text.strip():
        st.info(f"Enter the path of a {suffix} file on the machine running the app.")
        return None
    path = Path(text.strip()).expanduser()
    if not path.is_file() or path.suffix.lower() != suffix:
        st.error(f"{path}: no such {suffix} file. Give a {suffix} file on this machine.")
        return None
    if _too_big(path.name, path.stat().st_size):
        return None
    return _ModelFile(str(path.resolve()), _sha256(path.read_bytes()), path.name)


def _pick_onnx(prefix: str, preset: str | None) -> ModelHandle | None:
    picked = _model_file(
        prefix, preset, "onnx", "ONNX file", "a TensorFlow, CNTK, scikit-learn or torch export"
    )
    if picked is None:
        return None
    white = False
    if _onnx2torch_available():
        white = st.toggle(
            "White-box through onnx2torch",
            value=False,
            key=f"{prefix}onnx_white",
            help="convert the graph to a differentiable torch module, checked against "
            "onnxruntime on the chosen data, so that gradient attacks and explainers run",
        )
    else:
        st.caption("Black box (onnx2torch is not installed: gradient methods are off).")
    output = _output_input(prefix, "onnx")
    budget = _budget_input(prefix)
    shown, key = f"onnx {picked.name}", f"onnx:{picked.digest}:white={white}:out={output}"

    def build(data: DataHandle) -> ModelHandle | None:
        from xrobust.apps.dashboard import resources

        try:
            clf, diff = resources.onnx_classifier(
                picked.path, picked.digest, data.bundle, data.key, white, budget, picked.name,
                output,
            )  # fmt: skip
        except XRobustError as exc:
            st.error(f"The ONNX model does not fit the data {data.label!r}: {exc}")
            return None
        notes = []
        if diff is not None:
            notes.append(
                f"white-box (onnx2torch): max |torch - onnxruntime| = {diff:.3g} on the data"
            )
        return _bound(_unbound("onnx", shown, key, build), data, clf, budget, notes)

    return _unbound("onnx", shown, key, build)


def _litert_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ai_edge_litert") is not None


def _pick_tflite(prefix: str, preset: str | None) -> ModelHandle | None:
    if not _litert_available():
        st.error(
            "TensorFlow Lite models need Google's LiteRT interpreter: "
            "pip install 'xrobust[tflite]' (ai-edge-litert), then restart the app."
        )
        return None
    picked = _model_file(
        prefix, preset, "tflite", "TensorFlow Lite file", "float or int8/uint8 quantized"
    )
    if picked is None:
        return None
    signature = (
        st.text_input(
            "Signature (when the file has several)",
            value="",
            key=f"{prefix}tflite_signature",
            help="the signature to run, e.g. serving_default; a file with several signatures "
            "is refused until one is named",
        ).strip()
        or None
    )
    output = _output_input(prefix, "tflite")
    budget = _budget_input(prefix)
    shown = f"tflite {picked.name}"
    key = f"tflite:{picked.digest}:sig={signature}:out={output}"

    def build(data: DataHandle) -> ModelHandle | None:
        from xrobust.apps.dashboard import resources

        try:
            clf = resources.tflite_classifier(
                picked.path, picked.digest, data.bundle, data.key, budget, picked.name,
                signature, output,
            )  # fmt: skip
        except XRobustError as exc:
            st.error(f"The TensorFlow Lite model does not fit the data {data.label!r}: {exc}")
            return None
        info = clf.describe()
        notes = []
        if info.get("quantized"):
            t = info.get("input_tensor", {})
            notes.append(
                f"quantized: {t.get('dtype')} input (scale {t.get('scale', 0):.4g}, "
                f"zero point {t.get('zero_point')})"
            )
        return _bound(_unbound("tflite", shown, key, build), data, clf, budget, notes)

    return _unbound("tflite", shown, key, build)


def _output_input(prefix: str, kind: str) -> str | None:
    """The output to read when the model answers with several (empty: the one that is
    clearly the class scores; the model is refused when none is)."""
    name = st.text_input(
        "Output name (when the model has several)",
        value="",
        key=f"{prefix}{kind}_output",
        help="the output holding the class scores, e.g. logits; left empty, a model with "
        "several outputs is read only when one is clearly the class scores",
    ).strip()
    return name or None


#: what each endpoint protocol sends, for the sidebar's help
_PROTOCOL_HELP = (
    'instances: {"instances": rows} (TF Serving, Vertex AI, SageMaker TF containers); '
    'inputs: {"inputs": columns}; v2: the Open Inference Protocol (KServe, Triton, MLServer; '
    "URL http://HOST:PORT/v2/models/NAME); v2-binary: V2 with raw tensor bytes (KServe, Triton)"
)


def _endpoint_access(prefix: str, url: str) -> tuple[tuple[str, str], ...] | None:
    """How requests are authorised: header values from environment variables for HTTP(S)
    endpoints, the AWS region (and an endpoint URL override) for ``sagemaker://`` ones,
    whose requests are signed from the app process's AWS credentials."""
    if url.startswith("sagemaker://"):
        st.caption("Signed with SigV4 from the AWS credentials of the app's process.")
        region = st.text_input(
            "AWS region",
            value=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", ""),
            key=f"{prefix}aws_region",
        ).strip()
        override = st.text_input(
            "Endpoint URL override (optional)",
            value="",
            key=f"{prefix}aws_endpoint_url",
            help="a VPC endpoint or a local SageMaker-compatible server",
        ).strip()
        return tuple((k, v) for k, v in (("region", region), ("endpoint_url", override)) if v)
    headers = st.text_area(
        "Headers from environment variables",
        value="",
        key=f"{prefix}headers",
        placeholder="Authorization=XR_TOKEN\nX-Api-Key=Bearer $XR_KEY",
        help="one NAME=ENV_VAR per line: the value is read from that environment variable "
        "of the app's process, never typed here or shown",
    )
    from xrobust.models.endpoint import parse_headers_env

    try:
        headers_env = parse_headers_env([h for h in headers.splitlines() if h.strip()])
    except XRobustError as exc:
        st.error(f"Headers: {exc}")
        return None
    return tuple(sorted(("header:" + k, v) for k, v in headers_env.items()))


def _pick_endpoint(prefix: str, preset: str | None) -> ModelHandle | None:
    url = st.text_input(
        "Endpoint URL",
        value=preset if preset and preset.startswith(ENDPOINT_SCHEMES) else "",
        key=f"{prefix}url",
        placeholder=ENDPOINT_PLACEHOLDER,
    )
    if not url.strip():
        st.info(
            "Enter the URL of a TF Serving / Vertex AI / JSON endpoint, an Open Inference "
            "Protocol model (…/v2/models/NAME) or sagemaker://ENDPOINT_NAME."
        )
        return None
    from xrobust.models.endpoint import URL_PROTOCOLS, safe_url

    url = url.strip()
    sagemaker = url.startswith("sagemaker://")
    choices = ["instances", "inputs"] if sagemaker else list(URL_PROTOCOLS)
    guess = 2 if "/v2/models/" in url and not sagemaker else 0
    protocol = st.selectbox(
        "Protocol", choices, index=guess, key=f"{prefix}protocol", help=_PROTOCOL_HELP
    )
    access = _endpoint_access(prefix, url)
    if access is None:
        return None
    timeout = st.number_input(
        "Timeout (seconds per request)", 0.5, 600.0, 30.0, key=f"{prefix}timeout"
    )
    output = _output_input(prefix, "endpoint")
    budget = _budget_input(prefix)
    # the URL hashed (its query string may hold a key); header variable names, no values
    key = f"endpoint:{_sha256(url.encode())[:32]}:{protocol}:{access}:{float(timeout)}:{output}"
    shown = f"endpoint {safe_url(url)}"
    short = f"endpoint {short_url(url)}"

    def build(data: DataHandle) -> ModelHandle | None:
        from xrobust.apps.dashboard import resources

        try:
            clf = resources.endpoint_classifier(
                url, protocol, access, float(timeout), data.bundle, data.key, budget, output
            )
        except XRobustError as exc:
            st.error(f"The endpoint could not be used with the data {data.label!r}: {exc}")
            return None
        handle = _bound(_unbound("endpoint", shown, key, build), data, clf, budget, [])
        handle.short_label = short
        return handle

    handle = _unbound("endpoint", shown, key, build)
    handle.short_label = short
    return handle


def short_url(url: str, limit: int = 36) -> str:
    """``url`` for a legend: no scheme, user info, query or fragment; a long path keeps its
    first and last segments (``127.0.0.1:8500/v1/…/digits:predict``)."""
    from xrobust.models.endpoint import safe_url

    text = safe_url(url).split("://", 1)[-1]
    if len(text) <= limit:
        return text
    host, _, path = text.partition("/")
    parts = [p for p in path.split("/") if p]
    last = parts[-1] if parts else ""
    if len(last) > limit // 2:
        last = last[: limit // 2 - 1] + "…"
    head = f"{host}/{parts[0]}/…/" if len(parts) > 1 else f"{host}/"
    return head + last


#: every model source the dashboard offers, in the order shown
MODEL_SOURCES: list[ModelSource] = [
    ModelSource("demo", "Built-in demo", _pick_demo),
    ModelSource("run", "Run folder", _pick_run),
    ModelSource("upload", "Upload checkpoint", _pick_upload),
    ModelSource("onnx", "ONNX file", _pick_onnx),
    ModelSource("tflite", "TensorFlow Lite file", _pick_tflite),
    ModelSource("endpoint", "HTTP endpoint", _pick_endpoint),
]


def partner_demo(model: ModelHandle) -> str | None:
    """The preset of a second demo to compare ``model`` with: another demo trained on the
    same dataset (the digits demo's partner is ``digits_robust`` and back), else the demo
    of the model's dataset; None when there is no demo for it."""
    from xrobust.audit.demo import DEMOS, demo_dataset

    dataset = model.spec.name if model.spec is not None else None
    same = [n for n in DEMOS if demo_dataset(n) == dataset]
    mine = model.metadata.get("demo") if model.source == "demo" else None
    others = [n for n in same if n != mine]
    return f"demo:{others[0]}" if others else (f"demo:{same[0]}" if same else None)


def pick_model(prefix: str = "m_", preset: str | None = None) -> ModelHandle | None:
    """The source radio and that source's widgets; returns the chosen model or None."""
    labels = [s.label for s in MODEL_SOURCES]
    index = 0
    if preset:
        name = "demo" if preset.startswith("demo") else "run"
        if preset.startswith(ENDPOINT_SCHEMES):
            name = "endpoint"
        elif preset.lower().endswith((".onnx", ".tflite")):
            name = preset.lower().rsplit(".", 1)[1]
        index = [s.name for s in MODEL_SOURCES].index(name)
    label = st.radio("Model source", labels, index=index, key=f"{prefix}source")
    src = MODEL_SOURCES[labels.index(label)]
    return src.pick(prefix, preset)


# ------------------------------------------------------------------ data sources
def _fits(bundle: Any, model: ModelHandle) -> bool:
    if model.spec is None:  # a black box: bind() checks the data against the model
        return True
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
    from xrobust.data import list_datasets

    names = list_datasets()
    want = preset if preset in names else model.default_data
    if want is None and model.spec is None:  # a black box: start from the digits images
        want = "digits"
    name = st.selectbox(
        "Dataset",
        names,
        index=names.index(want) if want in names else 0,
        key=f"{prefix}builtin_{model.spec.name if model.spec is not None else model.source}",
    )
    spec = model.spec
    try:
        handle = builtin_handle(name, spec)
    except XRobustError as exc:
        want = f" ({spec.name!r})" if spec is not None else ""
        st.error(f"{exc}. Choose the dataset the model was trained on{want}.")
        return None
    if not _fits(handle.bundle, model):
        return None
    return handle


def builtin_handle(name: str, spec: Any = None) -> DataHandle:
    """The built-in dataset ``name`` at the image size of ``spec`` (when it is an image
    model's), as the sidebar's built-in data source returns it."""
    from xrobust.apps.dashboard import resources

    size = spec.input_shape[-1] if spec is not None and spec.modality == "image" else None
    return DataHandle(resources.builtin_data(name, size), f"builtin:{name}:{size}", name)


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
    f = uploader("Data file (.npz or .csv)", type=["npz", "csv", "tsv"], key=f"{prefix}data_upload")
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


def bind(model: ModelHandle | None, data: DataHandle | None) -> ModelHandle | None:
    """``model`` ready for the pages: a black box bound to ``data`` (its classifier built
    with the data's spec; None, with an ``st.error``, on a mismatch), anything else as is."""
    if model is None or model.bind is None:
        return model
    if data is None:
        return None
    return model.bind(data)


def pick_data(
    model: ModelHandle, prefix: str = "d_", preset: str | None = None
) -> DataHandle | None:
    """The data source radio and its widgets; returns the chosen data or None. For an
    unbound black box, the data decides the spec (see :func:`bind`)."""
    from xrobust.data import list_datasets

    labels = list(DATA_SOURCES)
    index = 0
    if preset and preset not in list_datasets():
        index = labels.index("File path")
    label = st.radio("Data source", labels, index=index, key=f"{prefix}source", horizontal=True)
    return DATA_SOURCES[label](prefix, model, preset)
