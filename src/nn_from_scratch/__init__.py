"""nn_from_scratch: a neural-network library on NumPy alone.

Every layer is a :class:`Node` with ``forward``, ``backward`` (the
vector-Jacobian product) and ``jacobian`` (the dense Jacobian), and every
gradient is checked against finite differences and PyTorch.

Modules: :mod:`~nn_from_scratch.nodes` (layers), :mod:`~nn_from_scratch.losses`,
:mod:`~nn_from_scratch.optim`, :mod:`~nn_from_scratch.datasets`,
:mod:`~nn_from_scratch.gradcheck`, :mod:`~nn_from_scratch.models`.
"""
from .network import NeuralNetwork, TrainingDiverged
from .node import Context, ElementwiseNode, Node, RowwiseNode
from .nodes import (
    ELU,
    GELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    LeakyReLU,
    GlobalAvgPool2d,
    Linear,
    LogSoftMax,
    MaxPool2d,
    NormalizedSoftMax,
    ReLU,
    Reshape,
    Sigmoid,
    SoftMax,
    Softplus,
    Tanh,
    Vectorization,
)
from .parallel import Parallel
from .parameter import Parameter
from .sequential import Sequential

__version__ = "0.1.0"

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Context",
    "Dropout",
    "ELU",
    "ElementwiseNode",
    "Flatten",
    "GELU",
    "GlobalAvgPool2d",
    "LeakyReLU",
    "Linear",
    "LogSoftMax",
    "MaxPool2d",
    "NeuralNetwork",
    "Node",
    "NormalizedSoftMax",
    "Parallel",
    "Parameter",
    "ReLU",
    "Reshape",
    "RowwiseNode",
    "Sequential",
    "Sigmoid",
    "SoftMax",
    "Softplus",
    "Tanh",
    "TrainingDiverged",
    "Vectorization",
]
