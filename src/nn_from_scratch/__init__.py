"""nn_from_scratch: a neural-network library on NumPy alone.

Every layer is a :class:`Node` with ``forward``, ``backward`` (the
vector-Jacobian product) and ``jacobian`` (the dense Jacobian), and every
gradient is checked against finite differences and PyTorch.

Modules: :mod:`~nn_from_scratch.nodes` (layers), :mod:`~nn_from_scratch.losses`,
:mod:`~nn_from_scratch.optim`, :mod:`~nn_from_scratch.datasets`,
:mod:`~nn_from_scratch.gradcheck`, :mod:`~nn_from_scratch.models`;
containers in :mod:`~nn_from_scratch.containers`, the contract in :mod:`~nn_from_scratch.node`.
"""
from . import nodes as _nodes
from .containers import Constant, Graph, Input, Parallel, Residual, Sequential
from .engine.threads import set_num_threads
from .training import NeuralNetwork, TrainingDiverged
from .context import Context
from .criterion import Criterion
from .node import Node
from .node_shortcuts import ElementwiseNode, RowwiseNode
from .nodes import *  # noqa: F401,F403  (the layers; their names are listed once, in nodes.__all__)
from .parameter import Parameter
from .registry import load_model, register_node, save_model

__version__ = "0.1.0"

__all__ = sorted(
    set(_nodes.__all__)
    | {"Constant", "Criterion", "Graph", "Input", "NeuralNetwork", "Parallel", "Parameter", "Residual", "Sequential",
       "TrainingDiverged", "set_num_threads"}
    | {"load_model", "register_node", "save_model"}  # a model that describes itself
)
