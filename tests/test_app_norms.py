# ruff: noqa: F811  (demo_cache is a fixture imported from app_support)
"""Every norm the library registers (L1 included) is offered by the dashboard's pages; on
each page, for the demo model, choosing it either runs or shows a message naming what does
not support it, never a traceback."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from app_support import demo_cache, new_app, no_exception  # noqa: F401

PAGES = (
    ("app_pages/adversarial.py", "adv_norm"),
    ("app_pages/blackbox.py", "bb_norm"),
    ("app_pages/compare.py", "cmp_norm"),
)


@pytest.mark.parametrize("page,key", PAGES)
def test_every_registered_norm_runs_or_says_why(demo_cache, page, key) -> None:
    from xrobust.norms import list_norms

    at = new_app().run()
    at.switch_page(page).run()
    no_exception(at)
    box = at.selectbox(key=key)
    assert list(box.options) == list_norms()  # the library's list, L1 included
    for norm in list_norms():
        at.selectbox(key=key).set_value(norm).run()
        no_exception(at)
