"""The differentiable strategy: a weight-sharing supernet trained with a hardware-aware loss,
the λ trace it writes, and the derivation of a discrete candidate from it."""

from .strategy import DifferentiableStrategy

__all__ = ["DifferentiableStrategy"]
