r"""Parallel: several branches on the same input, their outputs concatenated; a Node with an exact Jacobian."""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator, List, Optional, Tuple

from ..context import Context
from ..node import Node
from .sequential import check_layer

__all__ = ["Parallel"]


class Parallel(Node):
    r"""Apply every branch to the same input and concatenate the outputs along the last axis.

    .. math::
        y = \big[f_1(x), \dots, f_K(x)\big], \qquad
        \frac{\partial y}{\partial x} = \begin{bmatrix} J_1 \\ \vdots \\ J_K \end{bmatrix}, \qquad
        J^\top g = \sum_k J_k^\top g_k,

    where :math:`g_k` is the slice of :math:`g` that belongs to branch
    :math:`k`.  This is the smallest branching a Sequential needs for models
    with several heads on one trunk, e.g. ``Sequential(trunk, Parallel(class_head,
    box_head))``.  The branches' outputs must agree on every axis but the last.
    Parameter names are ``"<branch>.<name>"``, as for Sequential.
    """

    def __init__(self, *branches: Node) -> None:
        super().__init__()
        if not branches:
            raise ValueError("Parallel needs at least one branch")
        for i, branch in enumerate(branches):
            check_layer("Parallel", branch, i)
        self.branches: List[Node] = list(branches)

    def children(self) -> List[Tuple[str, Node]]:
        return [(str(i), branch) for i, branch in enumerate(self.branches)]

    def __len__(self) -> int:
        return len(self.branches)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.branches)

    def __getitem__(self, index: int) -> Node:
        return self.branches[index]

    def _forward(self, x: Any, ctx: Context) -> Any:
        ctx.steps = [branch.run(x, update_state=ctx.update_state) for branch in self.branches]
        outputs = [step.y for step in ctx.steps]
        lead = {tuple(out.shape[:-1]) for out in outputs}
        if len(lead) != 1 or any(out.ndim == 0 for out in outputs):
            raise ValueError(
                "Parallel branches must give outputs that agree on every axis but the last, got shapes "
                + ", ".join(str(out.shape) for out in outputs)
            )
        ctx.sizes = [out.shape[-1] for out in outputs]
        return ctx.xp.concat(outputs, axis=-1)  # y = [f_1(x), ..., f_K(x)]

    def _sum_over_branches(self, g: Any, ctx: Context, face: Callable[..., Optional[Any]]) -> Optional[Any]:
        """Run ``face(branch, part, step)`` on each branch's slice of ``g``; sum the input gradients it returns."""
        offsets = list(itertools.accumulate(ctx.sizes, initial=0))
        total = None  # Jᵀ g = Σ_k J_kᵀ g_k
        for branch, step, start, stop in zip(self.branches, ctx.steps, offsets[:-1], offsets[1:]):
            dx = face(branch, g[..., start:stop], step)
            if dx is not None:
                total = dx if total is None else total + dx
        return total

    def _backward(self, g: Any, ctx: Context, input_grad: bool) -> Optional[Any]:
        return self._sum_over_branches(
            g, ctx, lambda branch, part, step: branch.backward_from(step, part, input_grad=input_grad))

    def _vjp(self, g: Any, ctx: Context) -> Any:
        """Input gradient only; parameter gradients are left untouched."""
        return self._sum_over_branches(g, ctx, lambda branch, part, step: branch.vjp_from(step, part))

    def _jacobian(self, ctx: Context) -> Any:
        blocks = [branch.jacobian_from(step) for branch, step in zip(self.branches, ctx.steps)]
        return ctx.xp.concat(blocks, axis=ctx.y.ndim - 1)  # J_1, ..., J_K stacked along y's last axis

    def extra_repr(self) -> str:
        return "\n" + "\n".join(f"  ({i}): {b!r}" for i, b in enumerate(self.branches)) + "\n"
