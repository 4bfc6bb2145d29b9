"""Screenshots of an audit report for the README, taken in a real browser.

    .venv/bin/xrobust audit --demo --out reports/demo
    .venv/bin/python scripts/report_screenshots.py reports/demo docs

writes ``docs/report_summary.png`` (the header, verdict and summary table) and
``docs/report_robustness.png`` (the start of the adversarial section: the table, the
attacks' options, the robustness curve and the per-class bars), each re-saved with a
256-colour palette so it stays small. Needs Debian's chromium (/usr/bin/chromium) and
``pip install playwright``; the browser is the one the tests drive (tests/browser_support.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1] / "tests"  # the browser the tests drive


def _box(page, selector: str) -> dict[str, float]:
    box = page.locator(selector).first.bounding_box()
    if box is None:
        raise SystemExit(f"report has no visible {selector!r}")
    return box


def shoot(report_dir: Path, out: Path, width: int = 1100) -> list[Path]:
    """Render ``report_dir/report.html`` and save the two screenshots into ``out``."""
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(_TESTS))
    from browser_support import launch, shrink

    page_file = (report_dir / "report.html").resolve()
    if not page_file.is_file():
        raise SystemExit(f"{page_file} not found: run xrobust audit --out {report_dir} first")
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report_summary.png", out / "report_robustness.png"]
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(page_file.as_uri(), wait_until="load")
            top, summary = _box(page, "header"), _box(page, "section#summary")
            bottom = summary["y"] + summary["height"] + 8
            page.screenshot(
                path=str(paths[0]),
                full_page=True,
                clip={"x": 0, "y": top["y"], "width": width, "height": bottom - top["y"]},
            )
            adv = _box(page, "section#adversarial")
            # down to the first row of figures (robustness curve and per-class bars)
            second = _box(page, "section#adversarial .figs figure:nth-of-type(2)")
            end = second["y"] + second["height"] + 8
            page.screenshot(
                path=str(paths[1]),
                full_page=True,
                clip={
                    "x": adv["x"],
                    "y": adv["y"],
                    "width": adv["width"],
                    "height": end - adv["y"],
                },
            )
        finally:
            browser.close()
    for path in paths:
        shrink(path)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    for path in shoot(Path(sys.argv[1]), Path(sys.argv[2])):
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
