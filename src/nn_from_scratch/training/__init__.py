"""Training: :class:`NeuralNetwork` (fit, predict, evaluate), its checkpoints, progress output and generators.

``trainer`` holds the network and its epoch loop, ``checkpoint`` the
checkpoint format (capture, checked resume, :class:`CheckpointError`,
:func:`read_checkpoint_metadata`) and when a fit writes one,
``early_stopping`` model selection on the validation loss
(:class:`EarlyStop`, :func:`best_weights_path`), ``steps`` a pass's score
and the guard against a divergent step, ``progress`` the progress bar and
summary lines, ``generators`` :func:`node_generators` (the random
generators a model owns).
"""
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    CheckpointInfo,
    read_checkpoint,
    read_checkpoint_metadata,
)
from .generators import node_generators
from .progress import PROGRESS_MODES, ProgressMode
from .checkpoint import TrainingInterrupted
from .early_stopping import BEST_WEIGHTS_FORMAT, EarlyStop, best_weights_path
from .trainer import NeuralNetwork, TrainingDiverged

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "CheckpointInfo", "NeuralNetwork",
    "PROGRESS_MODES", "ProgressMode", "TrainingDiverged", "TrainingInterrupted", "node_generators",
    "read_checkpoint", "read_checkpoint_metadata", "BEST_WEIGHTS_FORMAT", "EarlyStop", "best_weights_path",
]
