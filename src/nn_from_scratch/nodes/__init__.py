"""All layers of the library, each a :class:`~nn_from_scratch.node.Node`."""
from ..node import Context, ElementwiseNode, Node, RowwiseNode
from .softmax import LogSoftMax, NormalizedSoftMax, SoftMax

__all__ = [
    "Context",
    "ElementwiseNode",
    "LogSoftMax",
    "Node",
    "NormalizedSoftMax",
    "RowwiseNode",
    "SoftMax",
]
