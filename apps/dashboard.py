"""The xrobust dashboard from a checkout: ``streamlit run apps/dashboard.py``.

A thin entry over the packaged app (``xrobust/apps/dashboard/streamlit_app.py``, which
``xrobust app`` starts, also outside the repository). It adds the checkout to ``sys.path``
when xrobust is not installed, then runs the packaged entry. For a first run without
prompts, telemetry or the Deploy button, prefer ``xrobust app``, or pass the same options:
``streamlit run apps/dashboard.py --server.headless true --server.showEmailPrompt false
--browser.gatherUsageStats false --client.toolbarMode viewer --server.maxUploadSize 50``.
Without ``XROBUST_APP_MAX_UPLOAD_MB`` the app's upload limit is the ``server.maxUploadSize``
given (50 MB when none is), and its upload widgets state that same limit.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

try:
    from xrobust.apps.dashboard import APP_PATH
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from xrobust.apps.dashboard import APP_PATH

runpy.run_path(str(APP_PATH), run_name="__main__")
