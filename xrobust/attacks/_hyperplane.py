"""The hyperplane-box projections of FAB's step; they live in :mod:`xrobust._hyperplane`
(below ``models``, with the norms) and are re-exported here for existing imports."""

from __future__ import annotations

from xrobust._hyperplane import project_l2, project_linf

__all__ = ["project_l2", "project_linf"]
