"""``python -m xrobust``: the same as the ``xrobust`` command."""

import sys

from xrobust.cli import main

sys.exit(main())
