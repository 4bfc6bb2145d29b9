"""The real browser of the browser tests and of scripts/report_screenshots.py: Debian's
chromium driven by Playwright with the flags that keep it off the network (see
ENVIRONMENT.md, "Real browser"), and a palette re-save that keeps screenshots small."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"

#: no sandbox (containers), no GPU, and nothing that talks to the network by itself
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_available() -> bool:
    """Whether chromium and playwright are installed here."""
    if not os.path.exists(CHROMIUM):
        return False
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def launch(playwright: Any) -> Any:
    """A headless chromium from ``sync_playwright()``'s object (a fresh profile)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def shrink(path: Path, colors: int = 256) -> None:
    """Re-save a screenshot with a ``colors``-colour palette (a small PNG for the README)."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=colors)
    small.save(path, optimize=True)
