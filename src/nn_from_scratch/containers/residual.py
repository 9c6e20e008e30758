r"""Residual: a branch added back onto its input, ``y = x + f(x)``, the building block of a ResNet."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..context import Context
from ..node import Node
from ..nodes.arithmetic import Add
from .node_list import check_layer
from .sequential import identity_jacobian
from .wiring import Call, Wiring

__all__ = ["Residual"]


def _indented(node: Node) -> str:
    """``repr(node)`` with its inner lines indented one level, for a nested listing."""
    return repr(node).replace("\n", "\n  ")


class Residual(Node):
    r"""A residual connection: the branch ``f`` added to the input, or to a ``shortcut`` of it.

    .. math::
        s = x + f(x) \quad\text{or}\quad s = \text{shortcut}(x) + f(x), \qquad
        y = s \quad\text{or}\quad y = \text{after}(s).

    The input fans out to both paths, so their gradients add:

    .. math::
        \frac{\partial s}{\partial x} = I + J_f \quad(\text{or } J_\text{shortcut} + J_f), \qquad
        \frac{\partial L}{\partial x} = J_f^\top g + g \quad(\text{or } J_f^\top g + J_\text{shortcut}^\top g),

    with :math:`g = \partial L/\partial s` (:math:`J_\text{after}^\top` of the
    upstream gradient when there is an ``after`` node).  The identity term is
    why deep residual networks train: however small :math:`J_f` becomes, the
    product of the blocks' Jacobians keeps a direct path with singular values
    near 1.  ``backward(..., input_grad=False)`` still gives the parameter
    gradients of both paths (and of ``after``).

    ``shortcut`` is any node whose output has the shape of ``f``'s, typically
    a projection where the block changes the shape (ResNet's 1x1 ``Conv2d``
    with stride 2 and a ``BatchNorm2d``).  ``after`` is applied to the sum,
    e.g. ResNet's ReLU: it is part of the block, so a torch module written the
    same way (attributes ``f``, ``shortcut`` and ``after``,
    ``forward = after(shortcut(x) + f(x))``) has the same state-dict keys:
    ``f.<name>``, ``shortcut.<name>`` and ``after.<name>``.  A parameter-free
    ``after`` adds no keys, so ``Residual(f, after=ReLU())`` and torch's
    ``Sequential`` of its pieces differ only in where the pieces sit.

    The two paths must give outputs of the same shape; otherwise a
    ``ValueError`` names both shapes; as for every refused call, the running
    statistics and random streams of both paths are then put back as they
    were (see :func:`~nn_from_scratch.context.refusal_undoes`).
    """

    def __init__(self, f: Node, shortcut: Optional[Node] = None, *, after: Optional[Node] = None) -> None:
        super().__init__()
        check_layer("Residual", f)
        if shortcut is not None:
            check_layer("Residual", shortcut)
        if after is not None:
            check_layer("Residual", after)
        self.f = f
        self.shortcut = shortcut
        self.after = after

    def children(self) -> List[Tuple[str, Node]]:
        named = [("f", self.f), ("shortcut", self.shortcut), ("after", self.after)]
        return [(name, node) for name, node in named if node is not None]

    # ------------------------------------------------------------------ describing
    def config(self) -> Dict[str, Any]:
        """No arguments besides its nodes, which :meth:`children` names ``f``, ``shortcut`` and ``after``."""
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], children: Sequence[Tuple[Optional[str], Node]] = ()) -> "Residual":
        """``Residual(f, shortcut, after=after)`` from the children named ``f``, ``shortcut`` and ``after``."""
        if config:
            raise ValueError(f"Residual.from_config takes no arguments besides its nodes, got {sorted(config)}")
        named = dict(children)
        if "f" not in named or set(named) - {"f", "shortcut", "after"} or len(named) != len(children):
            raise ValueError("Residual.from_config needs the child 'f' and at most 'shortcut' and 'after', each "
                             f"once; got {[name for name, _ in children]}")
        return cls(named["f"], named.get("shortcut"), after=named.get("after"))

    @property
    def wiring(self) -> Wiring:
        """``f`` (and ``shortcut``) on the input, an ``Add`` call of the two, then ``after`` on the sum."""
        calls = [Call("f", self.f, ("input",), ("f",))]
        skip = "input"
        if self.shortcut is not None:
            calls.append(Call("shortcut", self.shortcut, ("input",), ("shortcut",)))
            skip = "shortcut"
        calls.append(Call("add", Add(), (skip, "f"), ("add",)))
        if self.after is not None:
            calls.append(Call("after", self.after, ("add",), ("after",)))
        return Wiring(("input",), {}, tuple(calls), (calls[-1].name,))

    # ------------------------------------------------------------------ faces
    def _forward(self, x: Any, ctx: Context) -> Any:
        xp, update_state = ctx.xp, ctx.update_state
        ctx.f_step = self.f.run(x, update_state=update_state)
        ctx.shortcut_step = None if self.shortcut is None else self.shortcut.run(x, update_state=update_state)
        branch = xp.asarray(ctx.f_step.y)
        skip = x if ctx.shortcut_step is None else xp.asarray(ctx.shortcut_step.y)
        if tuple(branch.shape) != tuple(skip.shape):
            path = "the input" if self.shortcut is None else "the shortcut's output"
            raise ValueError(
                f"Residual: the branch f gives shape {branch.shape} but {path} has shape {skip.shape}; "
                "the two must agree (give a shortcut that maps the input to the branch's shape)"
            )
        total = skip + branch  # s = x + f(x)  (or shortcut(x) + f(x))
        ctx.after_step = None if self.after is None else self.after.run(total, update_state=update_state)
        return total if ctx.after_step is None else ctx.after_step.y

    def _through_after(self, g: Any, ctx: Context, parameters: bool) -> Any:
        """``∂L/∂s`` from the upstream gradient, back through ``after`` (adding its parameter gradients if asked)."""
        if ctx.after_step is None:
            return g
        if parameters:
            return self.after.backward_from(ctx.after_step, g)
        return self.after.vjp_from(ctx.after_step, g)

    def _backward(self, g: Any, ctx: Context, input_grad: bool) -> Optional[Any]:
        g = self._through_after(g, ctx, parameters=True)
        dx = self.f.backward_from(ctx.f_step, g, input_grad=input_grad)
        skip = g if ctx.shortcut_step is None else self.shortcut.backward_from(
            ctx.shortcut_step, g, input_grad=input_grad)
        if not input_grad:
            return None
        return ctx.xp.astype(dx + skip, ctx.x.dtype, copy=False)  # J_fᵀ g + g  (or + J_shortcutᵀ g)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        """Input gradient only; parameter gradients are left untouched."""
        g = self._through_after(g, ctx, parameters=False)
        skip = g if ctx.shortcut_step is None else self.shortcut.vjp_from(ctx.shortcut_step, g)
        return ctx.xp.astype(self.f.vjp_from(ctx.f_step, g) + skip, ctx.x.dtype, copy=False)

    def _jacobian(self, ctx: Context) -> Any:
        xp, x = ctx.xp, ctx.x
        branch = xp.asarray(self.f.jacobian_from(ctx.f_step))
        if ctx.shortcut_step is None:
            jac = branch + identity_jacobian(xp, x, branch.dtype)  # I + J_f
        else:
            jac = branch + xp.asarray(self.shortcut.jacobian_from(ctx.shortcut_step))  # J_shortcut + J_f
        if ctx.after_step is not None:
            jac = xp.tensordot(self.after.jacobian_from(ctx.after_step), jac, axes=ctx.after_step.x.ndim)
        return jac

    def extra_repr(self) -> str:
        return "\n" + "\n".join(f"  ({name}): {_indented(node)}" for name, node in self.children()) + "\n"
