"""The audit's sections, one module each (clean, adversarial, corruption, explanations,
sanity checks, requirements)."""
