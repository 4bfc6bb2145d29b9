"""``python -m xrobust.apps.dashboard.serve run APP [OPTIONS]``: ``streamlit run`` with the
dashboard warmed in the background while the server starts (:mod:`preload`).

``xrobust app`` runs this instead of ``python -m streamlit``; the arguments are Streamlit's
own. ``XROBUST_APP_WARM=0`` turns the warm-up off.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    if os.environ.get("XROBUST_APP_WARM", "1") != "0":
        from xrobust.apps.dashboard import preload

        preload.start()
    from streamlit.web import cli

    sys.argv = ["streamlit", *sys.argv[1:]]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
