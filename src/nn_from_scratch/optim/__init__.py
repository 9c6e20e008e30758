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
]
