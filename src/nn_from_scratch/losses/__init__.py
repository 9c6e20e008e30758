"""Losses: Nodes of the prediction with the target held fixed."""
from .base import REDUCTIONS, Loss
from .classification import CrossEntropyLoss, NLLLoss, SoftMaxLoss
from .regression import BCEWithLogitsLoss, MSELoss

__all__ = [
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "Loss",
    "MSELoss",
    "NLLLoss",
    "REDUCTIONS",
    "SoftMaxLoss",
]
