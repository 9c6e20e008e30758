"""All layers of the library, each a :class:`~nn_from_scratch.node.Node`."""
from ..node import Context, ElementwiseNode, Node, RowwiseNode
from .linear import Linear
from .softmax import LogSoftMax, NormalizedSoftMax, SoftMax

__all__ = [
    "Context",
    "ElementwiseNode",
    "Linear",
    "LogSoftMax",
    "Node",
    "NormalizedSoftMax",
    "RowwiseNode",
    "SoftMax",
]
