r"""Sequential: a chain of nodes that is itself a node, its Jacobian the chain rule made visible."""
from __future__ import annotations

from typing import Iterator, List, Tuple, Union, overload

import numpy as np

from .node import Context, Node

__all__ = ["Sequential"]


class Sequential(Node):
    r"""Nodes applied one after another: :math:`y = f_L(\cdots f_2(f_1(x)))`.

    ``forward`` runs the nodes in order, ``backward`` runs their backward
    passes in reverse (each adding its parameter gradients), and
    ``jacobian`` multiplies the layers' Jacobians,

    .. math::
        \frac{\partial y}{\partial x} = J_L \cdots J_2 J_1, \qquad
        J_\ell = \frac{\partial h_\ell}{\partial h_{\ell-1}},

    which is the chain rule written out (each product is a tensor contraction
    over the intermediate shape).  Parameters and buffers are named
    ``"<index>.<name>"`` as in ``torch.nn.Sequential``, so ``state_dict()``
    loads into the equivalent torch model.
    """

    def __init__(self, *nodes: Node) -> None:
        super().__init__()
        if len(nodes) == 1 and isinstance(nodes[0], (list, tuple)):
            nodes = tuple(nodes[0])
        for i, node in enumerate(nodes):
            if not isinstance(node, Node):
                raise TypeError(f"Sequential takes Nodes, got {type(node).__name__} at position {i}")
        self.nodes: List[Node] = list(nodes)

    # ------------------------------------------------------------- container
    def children(self) -> List[Tuple[str, Node]]:
        return [(str(i), node) for i, node in enumerate(self.nodes)]

    def append(self, node: Node) -> "Sequential":
        if not isinstance(node, Node):
            raise TypeError(f"Sequential takes Nodes, got {type(node).__name__}")
        self.nodes.append(node)
        return self

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    @overload
    def __getitem__(self, index: int) -> Node: ...

    @overload
    def __getitem__(self, index: slice) -> "Sequential": ...

    def __getitem__(self, index: Union[int, slice]) -> Union[Node, "Sequential"]:
        if isinstance(index, slice):
            return Sequential(*self.nodes[index])
        return self.nodes[index]

    # ------------------------------------------------------------------ faces
    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        ctx.steps = []
        h = x
        for node in self.nodes:
            step = node._run(node._prepare_input(h), ctx.update_state)
            ctx.steps.append(step)
            h = step.y
        return h

    def _backward_ctx(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        for node, step in zip(reversed(self.nodes), reversed(ctx.steps)):
            g = node._backward_ctx(node._prepare_output_grad(g, step.y), step)
        return g

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        """Input gradient only; parameter gradients are left untouched."""
        for node, step in zip(reversed(self.nodes), reversed(ctx.steps)):
            g = node._vjp(node._prepare_output_grad(g, step.y), step)
        return g

    def _jacobian(self, ctx: Context) -> np.ndarray:
        jac = None
        for node, step in zip(self.nodes, ctx.steps):
            local = node._jacobian(step)
            jac = local if jac is None else np.tensordot(local, jac, axes=step.x.ndim)
        if jac is None:  # an empty Sequential is the identity
            return np.eye(ctx.x.size, dtype=ctx.x.dtype).reshape(ctx.x.shape * 2)
        return jac

    def extra_repr(self) -> str:
        if not self.nodes:
            return ""
        return "\n" + "\n".join(f"  ({i}): {node!r}" for i, node in enumerate(self.nodes)) + "\n"
