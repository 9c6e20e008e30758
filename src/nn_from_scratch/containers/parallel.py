r"""Parallel: several branches on the same input, their outputs concatenated; a Node with an exact Jacobian."""
from __future__ import annotations

import itertools
from typing import Any, Callable, List, Mapping, Optional, Sequence, Union

from ..context import Context
from ..node import Node
from ..nodes.combine import Concat
from .node_list import NodeList
from .wiring import Call, Wiring

__all__ = ["Parallel"]


class Parallel(NodeList):
    r"""Apply every branch to the same input and concatenate the outputs along the last axis.

    .. math::
        y = \big[f_1(x), \dots, f_K(x)\big], \qquad
        \frac{\partial y}{\partial x} = \begin{bmatrix} J_1 \\ \vdots \\ J_K \end{bmatrix}, \qquad
        J^\top g = \sum_k J_k^\top g_k,

    where :math:`g_k` is the slice of :math:`g` that belongs to branch
    :math:`k`.  This is the smallest branching a Sequential needs for models
    with several heads on one trunk, e.g. ``Sequential(trunk, Parallel(class_head,
    box_head))``.  The branches' outputs must agree on every axis but the last.
    Parameter names are ``"<branch>.<name>"``, as for Sequential, or the
    branches' names for ``Parallel(OrderedDict(classes=..., boxes=...))``.

    The branches form a list as Sequential's layers do
    (:mod:`~nn_from_scratch.containers.node_list`): indexing, slicing (a
    Parallel of those branches), ``append``, ``extend``, ``insert``, ``pop``,
    assignment and deletion.  Their order is the order of the output's
    columns.  A Parallel keeps at least one branch, so removing the last one
    is refused, and a kept pass keeps the branches it ran.
    """

    _least = 1

    def __init__(self, *branches: Union[Node, Sequence[Node], Mapping[str, Node]]) -> None:
        super().__init__()
        if not branches:
            raise ValueError("Parallel needs at least one branch")
        self._hold(branches)

    @property
    def branches(self) -> List[Node]:
        """The branches in order (the list itself: change it through the Parallel's own methods)."""
        return self._layers

    @property
    def wiring(self) -> Wiring:
        """Each branch on the input, then their outputs joined along the last axis by a ``Concat(axis=-1)`` call."""
        calls = [Call(key, branch, ("input",), (key,)) for key, branch in self.children()]
        join = Call("concat", Concat(axis=-1, num_inputs=len(calls)), tuple(c.name for c in calls), ("concat",))
        return Wiring(("input",), {}, tuple(calls) + (join,), ("concat",))

    def _forward(self, x: Any, ctx: Context) -> Any:
        ctx.branches = list(self.branches)  # the branches of this pass, whatever changes before backward
        ctx.steps = [branch.run(x, update_state=ctx.update_state) for branch in ctx.branches]
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
        for branch, step, start, stop in zip(ctx.branches, ctx.steps, offsets[:-1], offsets[1:]):
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
        blocks = [branch.jacobian_from(step) for branch, step in zip(ctx.branches, ctx.steps)]
        return ctx.xp.concat(blocks, axis=ctx.y.ndim - 1)  # J_1, ..., J_K stacked along y's last axis

    def extra_repr(self) -> str:
        return self._layer_lines()
