"""The xrobust Streamlit dashboard: ``xrobust app`` (or ``streamlit run`` on :data:`APP_PATH`).

Layout: ``streamlit_app.py`` (the entry: sidebar and ``st.navigation``), ``app_pages/`` (one
file per page), ``sources.py`` (model and data sources), ``resources.py`` (cached wrappers
around library calls) and ``render.py`` (display helpers). Importing this module does not
import Streamlit or torch.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["APP_PATH", "PAGES_DIR"]

#: the Streamlit entry script
APP_PATH = Path(__file__).resolve().parent / "streamlit_app.py"
#: one file per page
PAGES_DIR = APP_PATH.parent / "app_pages"
