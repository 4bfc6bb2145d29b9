"""A real browser against a real server: ``xrobust app`` on 127.0.0.1, driven by headless
Debian chromium through Playwright (no browser download). For the demo model, an ONNX file
and an HTTP endpoint (served on 127.0.0.1 by the tests' ``start`` fixture), every page is
opened: no exception box, no page error, and no request leaves 127.0.0.1 (icons, fonts and
scripts all come from the app's server). On the demo, eps changes on the adversarial page
and the gallery follows, and each page is saved as a screenshot (into
``XROBUST_SCREENSHOTS`` when set: ``XROBUST_SCREENSHOTS=docs`` writes ``docs/app_*.png``).
"""

# ruff: noqa: F811  (demo_cache is a fixture imported from app_support)
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from app_support import demo_cache, demo_onnx  # noqa: F401
from browser_support import browser_available, launch, shrink


def _available() -> bool:
    try:
        import streamlit  # noqa: F401
    except ImportError:
        return False
    return browser_available()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: page url -> text that shows once the page has rendered
PAGES = {
    "": "Sanity checks",
    "adversarial": "Gallery:",
    "blackbox": "Model queries behind this page",
    "explanations": "How far can these explanations be trusted?",
    "compare": "The same examples under attack",
}


def _settle(page, text: str) -> None:
    page.wait_for_selector('[data-testid="stApp"]', timeout=90_000)
    page.get_by_text(text, exact=False).first.wait_for(timeout=90_000)
    # the script has finished when the running icon (beside "Stop", top right) is gone; its
    # text is "Stop", so an innerText test for "Running" never waited
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"]')",
        timeout=180_000,
    )
    # images and charts arrive after the script's last element
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stSkeleton\"]')"
        " && [...document.images].every(i => i.complete)",
        timeout=60_000,
    )
    page.wait_for_timeout(300)


def _until(cond, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


class _Watch:
    """What the page did: requests off 127.0.0.1 and page errors."""

    LOCAL = ("127.0.0.1",)

    def __init__(self, page) -> None:
        self.off_machine: list[str] = []
        self.errors: list[str] = []
        page.on("request", self._request)
        page.on("websocket", lambda ws: self._url(ws.url))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def _url(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("data", "blob", "about") or parts.hostname in self.LOCAL:
            return
        self.off_machine.append(url)

    def _request(self, request) -> None:
        self._url(request.url)


@contextmanager
def _app(env: dict[str, str], tmp_path: Path, model: str):
    """`xrobust app --headless --model MODEL` on a free port; yields its base URL."""
    port = _free_port()
    log_path = tmp_path / f"server-{port}.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "xrobust", "app", "--headless", "--port", str(port), "--model", model],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the server did not answer within 60 s"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _visit_all(page, base: str, what: str, shots: Path | None = None) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for url, text in PAGES.items():
        page.goto(f"{base}/{url}", wait_until="domcontentloaded")
        try:
            _settle(page, text)
        except PlaywrightTimeout as exc:  # say which page of which source, and what it shows
            shown = page.inner_text("body")[:1500]
            raise AssertionError(
                f"{what} /{url}: {text!r} never settled; the page: {shown}"
            ) from exc
        assert page.locator('[data-testid="stException"]').count() == 0, (what, url)
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0, (what, url)
        if shots is not None:
            _screenshot(page, shots / f"app_{url or 'overview'}.png")


def _screenshot(page, path: Path) -> None:
    """The page down to its last element (at most 1700 px), as a small PNG."""
    height = page.evaluate(
        "() => Math.ceil(document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight"
        " || document.body.scrollHeight)"
    )
    page.set_viewport_size({"width": 1400, "height": max(900, min(int(height) + 40, 1700))})
    page.wait_for_timeout(300)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    shrink(path, colors=128)
    page.set_viewport_size({"width": 1400, "height": 2200})


def _eps_changes_the_gallery(page, base: str) -> None:
    page.goto(f"{base}/adversarial", wait_until="domcontentloaded")
    _settle(page, "Gallery:")
    slider = page.get_by_role("slider", name="eps")
    before = slider.input_value()
    slider.focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    _until(lambda: slider.input_value() != before, 10)
    # the gallery's heading names the eps it was computed at
    _settle(page, f"at eps {float(slider.input_value()):.3f}")
    assert float(slider.input_value()) > float(before)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stImage"] img').count() >= 5


@pytest.mark.browser
@pytest.mark.skipif(not _available(), reason="needs Debian chromium, playwright and streamlit")
def test_dashboard_in_a_real_browser(demo_cache, demo_onnx, start, tmp_path) -> None:
    from app_support import demo_run
    from playwright.sync_api import sync_playwright

    env = {**os.environ, "XROBUST_CACHE": str(demo_cache), "OMP_NUM_THREADS": "1"}
    shots = (
        Path(os.environ["XROBUST_SCREENSHOTS"]) if os.environ.get("XROBUST_SCREENSHOTS") else None
    )
    server = start(demo_run().model, model_name="digits")  # the endpoint, on 127.0.0.1
    with sync_playwright() as p:
        browser = launch(p)
        try:
            for what, model in (
                ("demo", "demo"),
                ("onnx", str(demo_onnx)),
                ("endpoint", server.url),
            ):
                page = browser.new_page(viewport={"width": 1400, "height": 2200})
                watch = _Watch(page)
                with _app(env, tmp_path, model) as base:
                    _visit_all(page, base, what, shots if what == "demo" else None)
                    if what == "demo":
                        _eps_changes_the_gallery(page, base)
                    else:  # the sidebar names the black box it analyses
                        assert page.get_by_text(f"source: {what}", exact=False).count() >= 1
                assert watch.off_machine == [], (what, watch.off_machine)
                assert watch.errors == [], (what, watch.errors)
                page.close()
        finally:
            browser.close()
    assert server.rows_received > 0  # the endpoint's pages asked the served model
    if shots is not None:
        for name in ("overview", "adversarial", "blackbox", "explanations", "compare"):
            size = (shots / f"app_{name}.png").stat().st_size
            assert 10_000 < size < 300_000, (name, size)
