"""The audit's built-in sections, one module each (clean, adversarial, corruption,
explanations, deployed, sanity checks, requirements); importing this package registers
them in :data:`xrobust.audit.section.SECTIONS`."""

from xrobust.audit.section import SECTIONS
from xrobust.audit.sections import (  # noqa: F401  (each module registers its section)
    adversarial,
    clean,
    corruption,
    deployed,
    explanations,
    requirements,
    sanity_checks,
)

__all__ = ["SECTIONS"]
