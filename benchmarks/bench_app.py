"""Dashboard speed: the first render of each page and an eps change on the adversarial page.

Uses the built-in digits demo model (trained into ``$XROBUST_CACHE`` first if missing) and
Streamlit's AppTest, which runs the page scripts as the server does (no browser). With
``--browser`` the same is measured in headless chromium against ``xrobust app``, up to a
settled page (the gallery images on screen). Run by hand:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_app.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_app.py --repeats 5 --browser

Definitions:

- cold start: a fresh process, from nothing imported to the overview rendered (imports of
  torch, Streamlit, Captum, matplotlib included; the demo model read from disk).
- first render of a page: the session has opened the app once (sidebar done: the model and
  the data are loaded), every cached *result* is cleared, then the page is opened: all its
  attacks, explanations and probes are computed.
- eps change: on the adversarial page (64 examples, PGD-10, saliency), the slider moves to an
  eps not seen before; the time until the script has rendered the gallery again.

Prints markdown tables (median and max over ``--repeats``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time

PAGES = ["overview", "adversarial", "blackbox", "explanations", "compare"]


def _app():
    from streamlit.testing.v1 import AppTest

    from xrobust.apps.dashboard import APP_PATH

    return AppTest.from_file(str(APP_PATH), default_timeout=300)


def _check(at, what: str) -> None:
    exc = [e.value for e in at.exception]
    if exc:
        raise SystemExit(f"{what}: the page raised {exc}")


def cold_start() -> float:
    code = (
        "import time; t = time.perf_counter();"
        "from streamlit.testing.v1 import AppTest;"
        "from xrobust.apps.dashboard import APP_PATH;"
        "at = AppTest.from_file(str(APP_PATH), default_timeout=300).run();"
        "assert not at.exception, at.exception;"
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def first_renders() -> dict[str, float]:
    import streamlit as st

    times: dict[str, float] = {}
    at = _app().run()  # the sidebar loads model and data (resources stay cached)
    _check(at, "warm-up")
    for page in PAGES:
        st.cache_data.clear()
        if page == "overview":
            at = _app()
            t = time.perf_counter()
            at.run()
        else:
            at = _app().run()
            st.cache_data.clear()
            t = time.perf_counter()
            at.switch_page(f"app_pages/{page}.py").run()
        times[page] = time.perf_counter() - t
        _check(at, page)
    return times


def eps_changes(k: int) -> list[float]:
    at = _app().run()
    at.switch_page("app_pages/adversarial.py").run()
    _check(at, "adversarial")
    times = []
    for i in range(k):
        eps = round(0.08 + 0.013 * (i + 1), 3)  # new values: nothing cached
        t = time.perf_counter()
        at.slider(key="adv_eps_linf").set_value(eps).run()
        times.append(time.perf_counter() - t)
        _check(at, f"eps {eps}")
        if not at.get("image"):
            raise SystemExit(f"eps {eps}: no gallery image rendered")
    return times


MARKS = {
    "overview": "Sanity checks",
    "adversarial": "Gallery:",
    "blackbox": "Model queries behind this page",
    "explanations": "How far can these explanations be trusted?",
    "compare": "The same examples under attack",
}


def _settle(page, text: str) -> None:
    page.get_by_text(text, exact=False).first.wait_for(timeout=180_000)
    # the script has finished when the running icon (beside "Stop") is gone
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"]')",
        timeout=180_000,
    )


def _start_app(model: str | None) -> tuple[subprocess.Popen, str]:
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "xrobust", "app", "--headless", "--port", str(port)]
    proc = subprocess.Popen(
        cmd + (["--model", model] if model and not model.startswith("http") else []),
        env={**os.environ, **({"XROBUST_APP_MODEL": model} if model else {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            urllib.request.urlopen(f"{base}/_stcore/health", timeout=2)
            break
        except OSError:
            time.sleep(0.1)
    return proc, base


def _launch(p):
    return p.chromium.launch(
        executable_path="/usr/bin/chromium",
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"],
    )


def first_visits(model: str | None) -> dict[str, tuple[float, float]]:
    """A fresh ``xrobust app`` (``model`` preselected: None for the demo, or an endpoint
    URL): each page opened once, in order, the overview first (the server's first page).
    Per page: seconds to its title and to the settled page (every result drawn)."""
    from playwright.sync_api import sync_playwright

    proc, base = _start_app(model)
    out: dict[str, tuple[float, float]] = {}
    try:
        with sync_playwright() as p:
            b = _launch(p)
            page = b.new_page(viewport={"width": 1400, "height": 2000})
            for name in PAGES:
                t = time.perf_counter()
                page.goto(f"{base}/{'' if name == 'overview' else name}")
                page.locator("h1").first.wait_for(timeout=180_000)
                title = time.perf_counter() - t
                _settle(page, MARKS[name])
                out[name] = (title, time.perf_counter() - t)
            b.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return out


def browser_eps(repeats: int) -> list[float]:
    """eps changes on the adversarial page, in chromium against `xrobust app`."""
    from playwright.sync_api import sync_playwright

    proc, base = _start_app(None)
    eps: list[float] = []
    try:
        with sync_playwright() as p:
            b = _launch(p)
            page = b.new_page(viewport={"width": 1400, "height": 2000})
            page.goto(f"{base}/adversarial")
            _settle(page, "Gallery:")
            slider = page.get_by_role("slider", name="eps")
            for _ in range(repeats):
                before = slider.input_value()
                slider.focus()
                t = time.perf_counter()
                page.keyboard.press("ArrowRight")
                page.keyboard.press("ArrowRight")
                while slider.input_value() == before:
                    time.sleep(0.005)
                # the gallery heading names the eps it was computed at; then its images
                _settle(page, f"at eps {float(slider.input_value()):.3f}")
                page.locator('[data-testid="stImage"] img').first.wait_for(timeout=30_000)
                eps.append(time.perf_counter() - t)
            b.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return eps


def _served_demo():
    """The digits demo model behind a local TF-Serving-style endpoint (127.0.0.1)."""
    from xrobust.audit.demo import demo_run
    from xrobust.models import serving

    return serving.serve(demo_run("digits").model, model_name="digits")


def browser(repeats: int, endpoint: bool) -> None:
    runs = {"demo model": [first_visits(None) for _ in range(repeats)]}
    if endpoint:
        with _served_demo() as server:
            runs["local endpoint"] = [first_visits(server.url) for _ in range(repeats)]
    print("\n| first visit (chromium, fresh `xrobust app`) | source | title s | settled s, "
          "median | max |\n|---|---|---|---|---|")  # fmt: skip
    for source, rs in runs.items():
        for name in PAGES:
            title = statistics.median(r[name][0] for r in rs)
            done = [r[name][1] for r in rs]
            print(f"| {name} | {source} | {title:.2f} | {_fmt(done)} |")
    beps = browser_eps(3 * repeats)
    print(f"\n| eps change to the gallery (chromium), median / max of {len(beps)} | {_fmt(beps)} |")


def _fmt(v: list[float]) -> str:
    return f"{statistics.median(v):.2f} | {max(v):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--browser", action="store_true", help="also measure in headless chromium")
    ap.add_argument("--browser-only", action="store_true", help="only the chromium measurements")
    ap.add_argument(
        "--no-endpoint", action="store_true", help="chromium: the demo model only, no endpoint"
    )
    args = ap.parse_args()
    from xrobust.audit.demo import demo_run

    for name in ("digits", "digits_robust"):  # the demo models are cached before timing
        with contextlib.suppress(Exception):  # an older checkout has only the digits demo
            demo_run(name)
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if not args.browser_only:
        cold = [cold_start() for _ in range(args.repeats)]
        runs = [first_renders() for _ in range(args.repeats)]
        eps = eps_changes(3 * args.repeats)
        print("\n| what (AppTest) | median s | max s |\n|---|---|---|")
        print(f"| cold start to the overview (fresh process) | {_fmt(cold)} |")
        for p in PAGES:
            print(f"| first render: {p} | {_fmt([r[p] for r in runs])} |")
        print(f"| eps change, adversarial page, 64 examples ({len(eps)} changes) | {_fmt(eps)} |")
    if args.browser or args.browser_only:
        browser(args.repeats, endpoint=not args.no_endpoint)
    load = os.getloadavg()
    print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
