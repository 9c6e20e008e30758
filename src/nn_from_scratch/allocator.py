"""Old home of :func:`keep_freed_memory`, kept so that existing imports work: it now lives in
:mod:`nn_from_scratch.engine.allocator` (this name *is* that module, as for :mod:`nn_from_scratch.rowblocks`)."""
import sys

from .engine import allocator as _engine_allocator

sys.modules[__name__] = _engine_allocator
