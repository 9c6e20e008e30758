"""nn_from_scratch: a neural-network library on NumPy alone.

Every layer is a :class:`Node` with ``forward``, ``backward`` (the
vector-Jacobian product) and ``jacobian`` (the dense Jacobian), and every
gradient is checked against finite differences and PyTorch.
"""
from .node import Context, ElementwiseNode, Node, RowwiseNode
from .nodes import Linear, LogSoftMax, NormalizedSoftMax, SoftMax
from .parameter import Parameter
from .sequential import Sequential

__version__ = "0.1.0"

__all__ = [
    "Context",
    "ElementwiseNode",
    "Linear",
    "LogSoftMax",
    "Node",
    "NormalizedSoftMax",
    "Parameter",
    "RowwiseNode",
    "Sequential",
    "SoftMax",
]
