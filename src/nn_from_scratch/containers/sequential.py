r"""Sequential: a chain of nodes that is itself a node, its Jacobian the chain rule made visible."""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np

from ..context import Context
from ..node import Node
from .node_list import NodeList, check_layer
from .summary import Summary, brief, count_once, render_table
from .wiring import Wiring, chain

__all__ = ["Sequential", "check_layer", "identity_jacobian"]


def identity_jacobian(xp: ModuleType, x: Any, dtype: Any = None) -> Any:
    """The Jacobian of ``x -> x`` in namespace ``xp``: the identity of shape ``x.shape + x.shape`` (dtype ``x``'s)."""
    return xp.reshape(xp.eye(math.prod(x.shape), dtype=x.dtype if dtype is None else dtype), tuple(x.shape) * 2)


class Sequential(NodeList):
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
    loads into the equivalent torch model; ``Sequential(OrderedDict(conv=...,
    relu=...))`` names its layers instead (``"conv.weight"``, as torch).

    The layers form a list, as torch's: ``model[0]``, ``model["conv"]``,
    ``model[1:]`` (a Sequential sharing the layers), ``append``, ``extend``,
    ``insert``, ``pop``, ``model[i] = node`` and ``del model[i]``, each
    checked before anything changes (:mod:`~nn_from_scratch.containers.node_list`).
    A pass kept for ``backward`` keeps the layers it ran, so a change made
    between ``forward`` and ``backward`` does not mix two models.
    """

    def __init__(self, *nodes: Union[Node, Sequence[Node], Mapping[str, Node]]) -> None:
        super().__init__()
        self._hold(nodes)

    @property
    def nodes(self) -> List[Node]:
        """The layers in order (the list itself: change it through the Sequential's own methods)."""
        return self._layers

    @property
    def wiring(self) -> Wiring:
        """The layers as calls, each on the previous one's value (see :mod:`~nn_from_scratch.containers.wiring`)."""
        return chain(self.children())

    # ------------------------------------------------------------------ faces
    def _forward(self, x: Any, ctx: Context) -> Any:
        ctx.steps, ctx.nodes = [], list(self.nodes)  # the layers of this pass, whatever changes before backward
        h = x
        for i in range(len(ctx.nodes)):
            step = self._run_layer(ctx.nodes, i, h, ctx.update_state)
            ctx.steps.append(step)
            h = step.y
        return h

    @staticmethod
    def _run_layer(nodes: List[Node], i: int, h: Any, update_state: bool) -> Context:
        """Layer ``i`` on the previous layer's output; several outputs (Split, Chunk) are its several inputs."""
        node = nodes[i]
        if not isinstance(h, tuple):
            return node.run(h, update_state=update_state)
        if node.num_inputs != len(h):
            raise ValueError(
                f"Sequential: layer {i - 1} ({type(nodes[i - 1]).__name__}) gives {len(h)} outputs "
                f"but layer {i} ({type(node).__name__}) takes {node.num_inputs} input"
                f"{'' if node.num_inputs == 1 else 's'}; a chain hands each layer's outputs to the next "
                "layer as its inputs (wire other patterns with a Graph)"
            )
        return node.run(*h, update_state=update_state)

    def _backward(self, g: Any, ctx: Context, input_grad: bool) -> Optional[Any]:
        # Without the input gradient the pass stops at the first node with parameters,
        # which gives its parameter gradients but not its own input gradient.
        nodes = ctx.nodes
        stop = 0 if input_grad else next((i for i, node in enumerate(nodes) if node.has_parameters()), len(nodes))
        for i in range(len(nodes) - 1, stop - 1, -1):
            node, step = nodes[i], ctx.steps[i]
            g = node.backward_from(step, g, input_grad=input_grad or i > stop)
        return g if input_grad else None

    def _vjp(self, g: Any, ctx: Context) -> Any:
        """Input gradient only; parameter gradients are left untouched."""
        for node, step in zip(reversed(ctx.nodes), reversed(ctx.steps)):
            g = node.vjp_from(step, g)
        return g

    def _jacobian(self, ctx: Context) -> Any:
        """``J_L ⋯ J_1``; where a layer hands several values on, one block per value, summed over the paths."""
        xp, x = ctx.xp, ctx.x
        blocks: List[Optional[Any]] = [identity_jacobian(xp, x)]
        for node, step in zip(ctx.nodes, ctx.steps):
            local = node.jacobian_from(step)
            per_output = local if isinstance(step.y, tuple) else (local,)
            new: List[Optional[Any]] = []
            for row in per_output:
                row = row if len(step.inputs) > 1 else (row,)
                terms = [xp.tensordot(part, upstream, axes=value.ndim)  # J_ℓ · (J_{ℓ-1} ⋯ J_1)
                         for part, upstream, value in zip(row, blocks, step.inputs)
                         if part is not None and upstream is not None]
                new.append(sum(terms[1:], terms[0]) if terms else None)
            blocks = new
        outputs = ctx.y if isinstance(ctx.y, tuple) else (ctx.y,)
        full = [xp.zeros(tuple(y.shape) + tuple(x.shape), dtype=y.dtype) if block is None else block
                for block, y in zip(blocks, outputs)]
        return tuple(full) if isinstance(ctx.y, tuple) else full[0]

    # ---------------------------------------------------------------- summary
    def summary(self, input_shape: Union[None, int, Sequence[Optional[int]]] = None) -> Summary:
        """A Keras-style table of the layers: position (or name), layer, output shape and parameter count.

        Returns a :class:`~nn_from_scratch.containers.summary.Summary`, a
        string whose ``repr`` is the table itself, so a REPL or a notebook
        shows the table as it is; ``print(model.summary(...))`` and
        ``str(...)`` give the same text.

        The output shapes come from one forward pass of zeros of
        ``input_shape`` in eval mode without caching (``update_state=False``,
        as in :meth:`evaluate`), so the model is left exactly as it was: no
        cached forward, no running statistics or random state touched, the
        train/eval modes restored.  The batch dimension is shown as given; a
        leading ``None`` (any batch size) is run as 1 and shown as ``None``.
        Without ``input_shape`` the first layer's declared input shape is
        used where it has one (its ``input_shape``, or the Input of a Graph
        with one input; ``None`` at most on the batch axis); otherwise the
        table lists the layers and their counts without output shapes.

        ``Param #`` counts each layer's parameters and its floating buffers
        (running statistics), which Keras calls non-trainable parameters; the
        footer gives the total, the trainable (the :class:`Parameter` values)
        and the non-trainable counts.  A Parameter shared by two layers (a
        layer used twice, a tied weight) is counted at its first layer only,
        so the totals are those of :meth:`parameters`.  A container is shown
        in one line with its paths (``Residual(f=Sequential(Linear, ReLU),
        after=ReLU)``).
        """
        if input_shape is None:
            declared = self._declared_input_shape()
            if declared is None or any(d is None for d in declared[1:]):
                return self._table(None, None)
            input_shape = declared
        if isinstance(input_shape, (int, np.integer)) and not isinstance(input_shape, bool):
            input_shape = (int(input_shape),)
        try:
            shape = tuple(None if d is None else int(d) for d in input_shape)
        except TypeError:
            raise TypeError(f"input_shape must be a tuple of sizes, got {input_shape!r}") from None
        batch_unknown = len(shape) > 0 and shape[0] is None
        run_shape = ((1,) + shape[1:]) if batch_unknown else shape
        if any(d is None or d < 0 for d in run_shape):
            raise ValueError(
                f"input_shape must hold non-negative sizes (None is allowed for the batch axis only), got {shape}"
            )
        return self._table(run_shape, batch_unknown)

    def _declared_input_shape(self) -> Optional[Tuple[Optional[int], ...]]:
        """The first layer's declared input shape: its ``input_shape``, or a one-input Graph's Input shape."""
        if not self.nodes:
            return None
        first = self.nodes[0]
        shapes = getattr(first, "input_shapes", None)
        if first.input_shape is None and shapes is not None and len(shapes) == 1:
            return tuple(shapes[0])
        return first.input_shape

    def _table(self, run_shape: Optional[Tuple[int, ...]], batch_unknown: Optional[bool]) -> Summary:
        """The summary's rows, with output shapes from a trial pass on zeros of ``run_shape`` (None: no shapes)."""
        def shown(out_shape: Tuple[int, ...]) -> str:
            dims: Tuple[Optional[int], ...] = tuple(out_shape)
            if batch_unknown and dims:
                dims = (None,) + dims[1:]
            return str(dims)

        def shown_all(value: Any) -> str:
            return ", ".join(shown(v.shape) for v in value) if isinstance(value, tuple) else shown(value.shape)

        modes = [(node, node.training) for _, node in self.named_nodes()]  # a cycle of containers: ValueError
        self.eval()
        rows: List[Tuple[str, ...]] = []
        seen: Set[int] = set()
        trainable_total = buffer_total = 0
        nodes = list(self.nodes)
        try:
            h: Any = None if run_shape is None else np.zeros(run_shape)
            for i, (key, node) in enumerate(self.children()):
                name = repr(node)
                if "\n" in name:
                    name = brief(node)
                out = ()
                if run_shape is not None:
                    try:
                        step = self._run_layer(nodes, i, h, False)
                    except (ValueError, TypeError) as error:
                        raise ValueError(f"Sequential.summary: layer {i}, {name}, cannot take input of shape "
                                         f"{shown_all(h)}: {error}") from None
                    h = step.y
                    out = (shown_all(h),)
                trainable, buffers = count_once(node, seen)
                trainable_total, buffer_total = trainable_total + trainable, buffer_total + buffers
                rows.append((key, name) + out + (f"{trainable + buffers:,}",))
        finally:
            for node, mode in modes:
                node.training = mode
        if run_shape is None:
            return render_table("Sequential summary (no input shape given: summary(input_shape) adds the output "
                                "shapes)", ("#", "Layer", "Param #"), rows, trainable_total, buffer_total)
        return render_table(f"Sequential summary, input shape {shown(run_shape)}", ("#", "Layer", "Output shape",
                            "Param #"), rows, trainable_total, buffer_total)

    def extra_repr(self) -> str:
        return self._layer_lines()
