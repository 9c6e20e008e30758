"""Losses: criteria of a prediction and a target (see :mod:`.base`); not layers, they end a model."""
from .base import REDUCTIONS, Loss
from .classification import CrossEntropyLoss, NLLLoss, SoftMaxLoss
from .localization import LocalizationLoss
from .regression import BCEWithLogitsLoss, MSELoss, SmoothL1Loss
# losses: the rest of torch.nn's
from .binary import BCELoss
from .distributions import GaussianNLLLoss, KLDivLoss
from .embedding import CosineEmbeddingLoss, MarginRankingLoss, TripletMarginLoss
from .regression import HuberLoss, L1Loss

__all__ = [
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "LocalizationLoss",
    "Loss",
    "MSELoss",
    "NLLLoss",
    "REDUCTIONS",
    "SmoothL1Loss",
    "SoftMaxLoss",
    # losses: the rest of torch.nn's
    "BCELoss",
    "CosineEmbeddingLoss",
    "GaussianNLLLoss",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "MarginRankingLoss",
    "TripletMarginLoss",
]
