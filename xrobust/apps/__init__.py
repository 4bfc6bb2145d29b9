"""Front ends that ship with xrobust (the Streamlit dashboard).

Nothing in the library imports this package: it sits above ``xrobust.cli`` in the layering
and only uses the public API. It lives inside the ``xrobust`` package (rather than a
top-level ``apps/`` folder) so that ``pip install 'xrobust[app]'`` installs it and
``xrobust app`` finds it outside the repository.
"""
