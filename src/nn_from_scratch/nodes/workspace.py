"""Old home of :class:`Workspace`, kept so that existing imports work: it now lives in
:mod:`nn_from_scratch.engine.workspace` (the engine's scratch memory)."""
from ..engine.workspace import Workspace

__all__ = ["Workspace"]
