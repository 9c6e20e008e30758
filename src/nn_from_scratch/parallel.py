"""Old import path of :class:`Parallel`; the code lives in :mod:`nn_from_scratch.containers.parallel`."""
from .containers.parallel import Parallel

__all__ = ["Parallel"]
