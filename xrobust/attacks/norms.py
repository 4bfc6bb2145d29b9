"""The threat-model norms, re-exported from :mod:`xrobust.norms` (their home, below
``models`` so that every layer can use them); existing imports keep working.

Example:
    >>> from xrobust.attacks.norms import get_norm
    >>> get_norm("L2").name
    'l2'
"""

from __future__ import annotations

from xrobust.norms import (
    L1,
    L2,
    NORMS,
    Ball,
    EpsScale,
    EpsSlider,
    Linf,
    Norm,
    get_norm,
    list_norms,
)

__all__ = [
    "L1",
    "L2",
    "NORMS",
    "Ball",
    "EpsScale",
    "EpsSlider",
    "Linf",
    "Norm",
    "get_norm",
    "list_norms",
]
