"""All layers of the library, each a :class:`~nn_from_scratch.node.Node`."""
from ..node import Context, ElementwiseNode, Node, RowwiseNode
from .activations import ELU, GELU, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh
from .linear import Linear
from .regularization import BatchNorm1d, Dropout
from .shape import Flatten, Reshape, Vectorization
from .softmax import LogSoftMax, NormalizedSoftMax, SoftMax

__all__ = [
    "BatchNorm1d",
    "Context",
    "Dropout",
    "ELU",
    "ElementwiseNode",
    "Flatten",
    "GELU",
    "LeakyReLU",
    "Linear",
    "LogSoftMax",
    "Node",
    "NormalizedSoftMax",
    "ReLU",
    "Reshape",
    "RowwiseNode",
    "Sigmoid",
    "SoftMax",
    "Softplus",
    "Tanh",
    "Vectorization",
]
