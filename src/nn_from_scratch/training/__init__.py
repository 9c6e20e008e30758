"""Training: :class:`NeuralNetwork` (fit, predict, evaluate), its checkpoints, progress output and generators.

``trainer`` holds the network and its epoch loop, ``checkpoint`` the
checkpoint format (capture, checked resume, :class:`CheckpointError`,
:func:`read_checkpoint_metadata`), ``progress`` the progress bar and summary
lines, ``generators`` :func:`node_generators` (the random generators a model owns).
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
from .trainer import EarlyStop, NeuralNetwork, TrainingDiverged, TrainingInterrupted, best_weights_path

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "CheckpointInfo", "NeuralNetwork",
    "PROGRESS_MODES", "ProgressMode", "TrainingDiverged", "TrainingInterrupted", "node_generators",
    "read_checkpoint", "read_checkpoint_metadata", "EarlyStop", "best_weights_path",
]
