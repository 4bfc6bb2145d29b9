"""Shared helpers of the dashboard tests (tests/test_app_*.py): the demo model in a
private cache, a fresh AppTest, and readers for what a page rendered."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from xrobust.apps.dashboard import APP_PATH

TIMEOUT = 60


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """XROBUST_CACHE pointed at a folder shared by the test workers, with the digits demo
    (about 5 s, once) and its adversarially trained partner digits_robust (the Compare
    page's default model B; about 20 s, once) trained in it."""
    from xrobust.audit.demo import demo_run

    cache = tmp_path_factory.getbasetemp().parent / "xrobust-app-cache"
    old = os.environ.get("XROBUST_CACHE")
    os.environ["XROBUST_CACHE"] = str(cache)
    demo_run("digits")
    demo_run("digits_robust")
    try:
        yield cache
    finally:
        if old is None:
            os.environ.pop("XROBUST_CACHE", None)
        else:
            os.environ["XROBUST_CACHE"] = old


def new_app() -> object:
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT)


def no_exception(at: object) -> None:
    """Nothing on the page is a Python traceback."""
    assert [e.value for e in at.exception] == []


def metrics(at: object) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def errors(at: object) -> list[str]:
    return [e.value for e in at.error]


def markdown(at: object) -> list[str]:
    return [m.value for m in at.markdown]


def images(at: object) -> int:
    """Number of st.image / st.pyplot elements."""
    return len(at.get("image"))


def demo_run(name: str = "digits") -> object:
    from xrobust.audit.demo import demo_run as _run

    return _run(name)


@pytest.fixture(scope="module")
def demo_onnx(demo_cache: Path) -> Path:
    """The digits demo model exported to ONNX (a black box for the same data). It is kept
    beside the cached demo (named by its weights' hash), not in a pytest temporary folder:
    concurrent pytest sessions prune each other's old temporary folders, and a server
    started on a deleted file shows an error instead of the pages."""
    from xrobust.models.export import export_onnx

    run = demo_run()
    sha = run.metadata["weights"]["sha256"][:16]
    path = demo_cache / "onnx" / f"digits-{sha}.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.stem}.{os.getpid()}.onnx"
        export_onnx(run.model, tmp, tuple(run.spec.input_shape))
        os.replace(tmp, path)
    return path
