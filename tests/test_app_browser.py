"""A real browser against a real server: ``xrobust app`` on 127.0.0.1, driven by headless
Debian chromium through Playwright (no browser download). Opens every page, changes eps on
the adversarial page and waits for the gallery, checks that no exception box appears, and
saves screenshots (into ``XROBUST_SCREENSHOTS`` when set, e.g. ``docs/``)."""

# ruff: noqa: F811  (demo_cache is a fixture imported from app_support)
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from app_support import demo_cache  # noqa: F401

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _available() -> bool:
    if not os.path.exists(CHROMIUM):
        return False
    try:
        import playwright.sync_api  # noqa: F401
        import streamlit  # noqa: F401
    except ImportError:
        return False
    return True


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
    page.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
    page.get_by_text(text, exact=False).first.wait_for(timeout=90_000)
    # the script has finished when the "running" indicator is gone
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=90_000,
    )
    page.wait_for_timeout(300)


def _shrink(path: Path) -> None:
    """Re-save a screenshot with a 128-colour palette (a small PNG for the README)."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=128)
    small.save(path, optimize=True)


def _until(cond, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.browser
@pytest.mark.skipif(not _available(), reason="needs Debian chromium, playwright and streamlit")
def test_dashboard_in_a_real_browser(demo_cache, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    env = {**os.environ, "XROBUST_CACHE": str(demo_cache), "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xrobust",
            "app",
            "--headless",
            "--port",
            str(port),
            "--model",
            "demo",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    shots = Path(os.environ.get("XROBUST_SCREENSHOTS") or tmp_path)
    problems: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the server did not answer within 60 s"
            time.sleep(0.3)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 2200})
                page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
                for url, text in PAGES.items():
                    page.goto(f"{base}/{url}", wait_until="domcontentloaded")
                    _settle(page, text)
                    assert page.locator('[data-testid="stException"]').count() == 0, url
                    page.screenshot(path=str(tmp_path / f"app_{url or 'overview'}.png"))

                # the adversarial page: move eps and wait for the gallery at the new eps
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
                shots.mkdir(parents=True, exist_ok=True)
                page.set_viewport_size({"width": 1400, "height": 1150})
                page.screenshot(path=str(shots / "app_adversarial.png"))
                _shrink(shots / "app_adversarial.png")
            finally:
                browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert problems == []
    assert (shots / "app_adversarial.png").stat().st_size > 10_000
