"""An example xrobust plugin (see its pyproject.toml for the entry points).

Importing this package registers nothing by itself: xrobust reads the entry points and
registers :class:`~xrobust_toy_plugin.bim.BIM` as the attack ``bim`` and
:class:`~xrobust_toy_plugin.deconvolution.Deconvolution` as the explainer
``deconvolution``.
"""
