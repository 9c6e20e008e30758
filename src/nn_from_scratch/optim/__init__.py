"""Optimizers and learning-rate schedulers with ``torch.optim`` semantics.

>>> from nn_from_scratch.optim import Adam, CosineAnnealingLR
"""
from .adam import Adam, AdamW
from .base import Optimizer
from .rmsprop import RMSProp, RMSprop
from .sgd import SGD, GradientDescent
from .schedulers import CosineAnnealingLR, ExponentialLR, LRScheduler, StepLR

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "ExponentialLR",
    "GradientDescent",
    "LRScheduler",
    "Optimizer",
    "RMSProp",
    "RMSprop",
    "StepLR",
    # optimizers: torch's further optimizers and schedulers, and the gradient utilities
    "Adadelta",
    "Adagrad",
    "Adamax",
    "LBFGS",
    "NAdam",
    "RAdam",
    "ChainedScheduler",
    "CosineAnnealingWarmRestarts",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "clip_grad_norm_",
    "clip_grad_value_",
    "parameters_to_vector",
    "vector_to_parameters",
]

# optimizers: torch's further optimizers and schedulers, and the gradient utilities
from .adagrad import Adadelta, Adagrad  # noqa: E402
from .adam_variants import Adamax, NAdam, RAdam  # noqa: E402
from .lbfgs import LBFGS  # noqa: E402
from .cyclic_schedulers import CosineAnnealingWarmRestarts, OneCycleLR  # noqa: E402
from .plateau import ReduceLROnPlateau  # noqa: E402
from .scheduler_chains import ChainedScheduler, SequentialLR  # noqa: E402
from .scaling_schedulers import LambdaLR, LinearLR, MultiStepLR  # noqa: E402
from .clipping import clip_grad_norm_, clip_grad_value_  # noqa: E402
from .vectors import parameters_to_vector, vector_to_parameters  # noqa: E402
