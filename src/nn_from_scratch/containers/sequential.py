r"""Sequential: a chain of nodes that is itself a node, its Jacobian the chain rule made visible."""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Iterator, List, Optional, Sequence, Set, Tuple, Union, overload

import numpy as np

from ..context import Context
from ..criterion import Criterion
from ..node import Node
from .summary import brief, count_once, render_table

__all__ = ["Sequential", "check_layer", "identity_jacobian"]


def check_layer(container: str, node: Any, position: Optional[int] = None) -> None:
    """Raise ``TypeError`` unless ``node`` can be a layer of ``container``: a Node, and not a loss."""
    where = "" if position is None else f" at position {position}"
    if isinstance(node, Criterion):
        raise TypeError(
            f"{container}: {type(node).__name__}{where} is a loss, not a layer: give it to NeuralNetwork, "
            "or call it on the model's output"
        )
    if not isinstance(node, Node):
        raise TypeError(f"{container} takes Nodes, got {type(node).__name__}{where}")


def identity_jacobian(xp: ModuleType, x: Any, dtype: Any = None) -> Any:
    """The Jacobian of ``x -> x`` in namespace ``xp``: the identity of shape ``x.shape + x.shape`` (dtype ``x``'s)."""
    return xp.reshape(xp.eye(math.prod(x.shape), dtype=x.dtype if dtype is None else dtype), tuple(x.shape) * 2)


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
            check_layer("Sequential", node, i)
        self.nodes: List[Node] = list(nodes)

    # ------------------------------------------------------------- container
    def children(self) -> List[Tuple[str, Node]]:
        return [(str(i), node) for i, node in enumerate(self.nodes)]

    def append(self, node: Node) -> "Sequential":
        """Add ``node`` at the end of the chain; returns the Sequential."""
        check_layer("Sequential", node)
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
    def _forward(self, x: Any, ctx: Context) -> Any:
        ctx.steps = []
        h = x
        for i in range(len(self.nodes)):
            step = self._run_layer(i, h, ctx.update_state)
            ctx.steps.append(step)
            h = step.y
        return h

    def _run_layer(self, i: int, h: Any, update_state: bool) -> Context:
        """Layer ``i`` on the previous layer's output; several outputs (Split, Chunk) are its several inputs."""
        node = self.nodes[i]
        if not isinstance(h, tuple):
            return node.run(h, update_state=update_state)
        if node.num_inputs != len(h):
            raise ValueError(
                f"Sequential: layer {i - 1} ({type(self.nodes[i - 1]).__name__}) gives {len(h)} outputs "
                f"but layer {i} ({type(node).__name__}) takes {node.num_inputs} input"
                f"{'' if node.num_inputs == 1 else 's'}; a chain hands each layer's outputs to the next "
                "layer as its inputs (wire other patterns with a Graph)"
            )
        return node.run(*h, update_state=update_state)

    def _backward(self, g: Any, ctx: Context, input_grad: bool) -> Optional[Any]:
        # Without the input gradient the pass stops at the first node with parameters,
        # which gives its parameter gradients but not its own input gradient.
        stop = 0 if input_grad else next((i for i, node in enumerate(self.nodes) if node.has_parameters()),
                                         len(self.nodes))
        for i in range(len(self.nodes) - 1, stop - 1, -1):
            node, step = self.nodes[i], ctx.steps[i]
            g = node.backward_from(step, g, input_grad=input_grad or i > stop)
        return g if input_grad else None

    def _vjp(self, g: Any, ctx: Context) -> Any:
        """Input gradient only; parameter gradients are left untouched."""
        for node, step in zip(reversed(self.nodes), reversed(ctx.steps)):
            g = node.vjp_from(step, g)
        return g

    def _jacobian(self, ctx: Context) -> Any:
        """``J_L ⋯ J_1``; where a layer hands several values on, one block per value, summed over the paths."""
        xp, x = ctx.xp, ctx.x
        blocks: List[Optional[Any]] = [identity_jacobian(xp, x)]
        for node, step in zip(self.nodes, ctx.steps):
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
    def summary(self, input_shape: Union[int, Sequence[Optional[int]]]) -> str:
        """A Keras-style table of the layers: index, layer, output shape and parameter count.

        The output shapes come from one forward pass of zeros of
        ``input_shape`` in eval mode without caching (``update_state=False``,
        as in :meth:`evaluate`), so the model is left exactly as it was: no
        cached forward, no running statistics or random state touched, the
        train/eval modes restored.  The batch dimension is shown as given; a
        leading ``None`` (any batch size) is run as 1 and shown as ``None``.

        ``Param #`` counts each layer's parameters and its floating buffers
        (running statistics), which Keras calls non-trainable parameters; the
        footer gives the total, the trainable (the :class:`Parameter` values)
        and the non-trainable counts.  A Parameter shared by two layers (a
        layer used twice, a tied weight) is counted at its first layer only,
        so the totals are those of :meth:`parameters`.  A container is shown
        in one line with its paths (``Residual(f=Sequential(Linear, ReLU),
        after=ReLU)``).  Returns the table as a string.
        """
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
        try:
            h: Any = np.zeros(run_shape)
            for i, node in enumerate(self.nodes):
                name = repr(node)
                if "\n" in name:
                    name = brief(node)
                try:
                    step = self._run_layer(i, h, False)
                except (ValueError, TypeError) as error:
                    raise ValueError(
                        f"Sequential.summary: layer {i}, {name}, cannot take input of shape {shown_all(h)}: {error}"
                    ) from None
                h = step.y
                trainable, buffers = count_once(node, seen)
                trainable_total, buffer_total = trainable_total + trainable, buffer_total + buffers
                rows.append((str(i), name, shown_all(h), f"{trainable + buffers:,}"))
        finally:
            for node, mode in modes:
                node.training = mode
        return render_table(f"Sequential summary, input shape {shown(run_shape)}", ("#", "Layer", "Output shape",
                            "Param #"), rows, trainable_total, buffer_total)

    def extra_repr(self) -> str:
        if not self.nodes:
            return ""
        return "\n" + "\n".join(f"  ({i}): {node!r}" for i, node in enumerate(self.nodes)) + "\n"
