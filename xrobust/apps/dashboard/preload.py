"""Warm the dashboard while its server starts, so that the first page opens quickly.

``xrobust app`` starts Streamlit through :mod:`xrobust.apps.dashboard.serve`, which calls
:func:`start` before the server runs. A daemon thread then imports what the pages use
(torch, the attacks, explainers, audit and figures: a few seconds on a busy CPU, which the
first page would otherwise wait for), loads the preselected demo model and its data into
the caches the sidebar reads (``st.cache_resource``), and, once Streamlit's runtime is up,
computes the overview's default quick audit into the result cache the page reads
(``st.cache_data``), through the same functions and arguments as the page. A page opened
meanwhile waits for the value being computed instead of computing it twice (Streamlit's
per-key compute lock).

Nothing is trained here: a demo model that is not cached yet is trained by the sidebar,
with its progress shown. Any failure is logged at debug level and leaves the pages to do
the work themselves.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time

__all__ = ["start", "warm"]

log = logging.getLogger(__name__)

#: Streamlit loggers that warn about cache calls made outside a script run (expected here)
_QUIET = (
    "streamlit.runtime.scriptrunner_utils.script_run_context",
    "streamlit.runtime.caching.cache_data_api",
)


def _demo_name(preset: str | None) -> str | None:
    """The demo the sidebar starts with for ``XROBUST_APP_MODEL`` (None: not a demo)."""
    from xrobust.audit.demo import DEMOS

    if not preset:
        return next(iter(DEMOS))
    if preset == "demo":
        return next(iter(DEMOS))
    if preset.startswith("demo:") and preset[5:] in DEMOS:
        return preset[5:]
    return None


def _wait_for_runtime(timeout: float) -> bool:
    from streamlit.runtime import Runtime

    deadline = time.monotonic() + timeout
    while not Runtime.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def warm(preset: str | None = None, runtime_timeout: float = 60.0) -> bool:
    """Import the pages' libraries and precompute the preselected demo's overview; returns
    whether the overview's report was computed (False: nothing to precompute)."""
    import torch  # noqa: F401  - the slowest import, first

    import xrobust.attacks
    import xrobust.audit
    import xrobust.audit.figures
    import xrobust.explain  # noqa: F401
    from xrobust.apps.dashboard import resources, sources

    name = _demo_name(preset)
    if name is None or not resources.demo_is_trained(name):
        return False
    shared = sources.demo_handle(name)
    data = sources.builtin_handle(shared.default_data or shared.spec.name, shared.spec)
    # a classifier of its own: classifiers count queries per object, and a page opened
    # meanwhile must not count the warm-up's (the cached report is keyed on model.key)
    from xrobust.models import as_classifier

    model = dataclasses.replace(shared, classifier=as_classifier(shared.model, spec=shared.spec))
    if not _wait_for_runtime(runtime_timeout):
        return False
    norm, n = resources.norms()[0], resources.overview_n(model.differentiable)
    for clean_only in (True, False):  # what the page shows first, then the rest
        resources.overview_report(model, data, norm, n, clean_only=clean_only)
    return True


def _run(preset: str | None) -> None:
    loggers = [logging.getLogger(n) for n in _QUIET]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    t = time.perf_counter()
    try:
        done = warm(preset)
        log.debug(
            "dashboard warm-up %s in %.1f s", "done" if done else "skipped", time.perf_counter() - t
        )
    except Exception as exc:  # the pages compute what is missing
        log.debug("dashboard warm-up failed: %s", exc)
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def start(preset: str | None = None) -> threading.Thread:
    """Start :func:`warm` in a daemon thread (``preset`` default: ``XROBUST_APP_MODEL``)."""
    preset = os.environ.get("XROBUST_APP_MODEL") if preset is None else preset
    th = threading.Thread(target=_run, args=(preset,), name="xrobust-warm-up", daemon=True)
    th.start()
    return th
