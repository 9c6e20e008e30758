"""Training: :class:`NeuralNetwork` (fit, predict, evaluate), its callbacks, checkpoints, progress and generators.

``trainer`` holds the network and its epoch loop, ``data`` what it takes as
data (arrays, tuples and dicts of arrays, a DataLoader), ``objective`` its
loss or losses and metrics, ``callbacks`` the callback protocol with
:class:`LearningRateScheduler`, :class:`ReduceLROnPlateau` and
:class:`TerminateOnNaN`, ``early_stopping`` :class:`EarlyStopping` (model
selection on a monitored value, :class:`EarlyStop`, :func:`best_weights_path`),
``model_checkpoint`` :class:`ModelCheckpoint`, ``loggers``
:class:`CSVLogger` and :class:`PlotCurves`, ``progress`` the progress bar
(:class:`ProgressLogger`), ``checkpoint`` the checkpoint format (capture,
checked resume, :class:`CheckpointError`, :func:`read_checkpoint_metadata`),
``steps`` a pass's score and the guard against a divergent step,
``generators`` :func:`node_generators` (the random generators a model owns).
"""
from .callbacks import Callback, LearningRateScheduler, ReduceLROnPlateau, TerminateOnNaN
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    CheckpointInfo,
    TrainingInterrupted,
    read_checkpoint,
    read_checkpoint_metadata,
)
from .early_stopping import BEST_WEIGHTS_FORMAT, EarlyStop, EarlyStopping, best_weights_path
from .generators import node_generators
from .loggers import CSVLogger, PlotCurves
from .model_checkpoint import ModelCheckpoint
from .progress import PROGRESS_MODES, ProgressLogger, ProgressMode
from .trainer import NeuralNetwork, TrainingDiverged

__all__ = [
    "BEST_WEIGHTS_FORMAT", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "CSVLogger", "Callback", "CheckpointError",
    "CheckpointInfo", "EarlyStop", "EarlyStopping", "LearningRateScheduler", "ModelCheckpoint", "NeuralNetwork",
    "PROGRESS_MODES", "PlotCurves", "ProgressLogger", "ProgressMode", "ReduceLROnPlateau", "TerminateOnNaN",
    "TrainingDiverged", "TrainingInterrupted", "best_weights_path", "node_generators", "read_checkpoint",
    "read_checkpoint_metadata",
]
