"""Old home of the training progress output, kept so that existing imports work: it now lives in
:mod:`nn_from_scratch.training.progress`.

This name *is* that module (``sys.modules`` points here to it), so a test's
``monkeypatch.setattr(progress, ...)`` through either name reaches the same code.
"""
import sys

from .training import progress as _training_progress

sys.modules[__name__] = _training_progress
