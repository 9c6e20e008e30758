"""Old home of the row-block thread pool, kept so that existing imports work: it now lives in
:mod:`nn_from_scratch.engine.rowblocks`.

This name *is* that module (``sys.modules`` points here to it), so there is one thread setting, and
``set_num_threads`` or a test's ``monkeypatch.setattr(rowblocks, ...)`` through either name reaches the engine.
"""
import sys

from .engine import rowblocks as _engine_rowblocks

sys.modules[__name__] = _engine_rowblocks
