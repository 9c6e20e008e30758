"""Old import path of :class:`Sequential`; the code lives in :mod:`nn_from_scratch.containers.sequential`."""
from .containers.sequential import Sequential

__all__ = ["Sequential"]
