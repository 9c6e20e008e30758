"""Containers: nodes made of nodes, written only against the public contract of :mod:`nn_from_scratch.node`.

Each child's pass is kept by the container (``child.run``, ``child.backward_from``,
``child.vjp_from``, ``child.jacobian_from``), never through a child's private methods.
"""
from .graph import Constant, Graph, Input, Placeholder
from .parallel import Parallel
from .residual import Residual
from .sequential import Sequential, check_layer
from .summary import Summary

__all__ = ["Constant", "Graph", "Input", "Parallel", "Placeholder", "Residual", "Sequential", "Summary",
           "check_layer"]
