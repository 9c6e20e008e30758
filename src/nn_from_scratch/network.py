"""Old import path of the trainer: :class:`NeuralNetwork` now lives in :mod:`nn_from_scratch.training.trainer`,
the checkpoint format in :mod:`nn_from_scratch.training.checkpoint`, :func:`node_generators` in
:mod:`nn_from_scratch.training.generators`."""
from .training.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointError
from .training.generators import node_generators
from .training.trainer import NeuralNetwork, TrainingDiverged, TrainingInterrupted

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CheckpointError", "NeuralNetwork", "TrainingDiverged",
           "TrainingInterrupted", "node_generators"]
