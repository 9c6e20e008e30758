r"""The Node: every layer, activation and container is one.

A node maps its input :math:`x` to :math:`y = f(x)`.  A user calls three faces,
``forward(x)``, ``backward(dL_dy)`` (the vector-Jacobian product
:math:`J^\top g`, adding the parameter gradients into ``.grad``) and
``jacobian(x)`` (the dense :math:`J`, ``y.shape + x.shape``; with
``wrt="weight"`` the Jacobian with respect to a parameter,
``y.shape + weight.shape``).  A layer writes
hooks: ``_forward`` (the formula), ``_vjp`` (the input gradient) and
``_accumulate_grads`` (the parameter gradients), or ``_jacobian`` instead of
``_vjp``.  The whole contract, with the context calls that containers use, is
described once, in ``docs/architecture.md`` ("The Node contract"); the
machinery under the faces (the context calls, one derivative derived from the
other, float16, thread ownership) is :class:`~nn_from_scratch.function.Function`.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .backend import is_array, namespace_of
from .context import Context, as_float_array
from .function import Function, InputGrad, jacobian_from_parameter_grads
from .node_tree import NodeTree
from .parameter import Parameter

ShapeLike = Union[None, int, Sequence[Optional[int]]]

__all__ = ["GraphValue", "Node", "plain"]


class Node(Function, NodeTree):
    """A layer ``y = f(x)``: the faces a user calls, over the hooks a layer writes (see the module docstring)."""

    _derivative_hooks: Tuple[str, ...] = ("_jacobian", "_vjp")

    def __init__(self, input_shape: ShapeLike = None) -> None:
        base = next(c for c in type(self).__mro__ if "_derivative_hooks" in vars(c))
        if not any(getattr(type(self), hook) is not getattr(base, hook) for hook in base._derivative_hooks):
            raise TypeError(f"{type(self).__name__} must define one of {', '.join(base._derivative_hooks)}"
                            " to give its derivative")
        self.input_shape = _normalize_shape(input_shape)
        self.training = True

    # ------------------------------------------------------------------ the faces
    def forward(self, x: Any, *more: Any) -> Any:
        """``y = f(x)``, keeping the pass for ``backward`` (owned by this thread until ``backward`` drops it)."""
        return self._keep(lambda: self.run(x, *more)).y

    def backward(self, dL_dy: Any, reset_after: bool = True, *, input_grad: InputGrad = True) -> Any:
        """``dL/dx = Jᵀ·dL_dy`` for the last forward; parameter gradients are added into their ``.grad``.

        ``reset_after=False`` keeps the pass, for another backward.
        ``input_grad=False`` returns None and computes only the parameter
        gradients (a model then stops at its first node with parameters);
        one flag per input (``input_grad=(False, True)``) leaves out the
        gradients of the inputs flagged false, which come back as None.
        """
        dx = self.backward_from(self._require_ctx("backward"), dL_dy, input_grad=input_grad)
        if reset_after:
            self.reset()
        return dx

    def jacobian(self, x: Any = None, *more: Any, wrt: Union[None, str, Parameter] = None) -> Any:
        r"""The dense Jacobian, ``y.shape + x.shape``, at the kept pass or at ``x`` (the kept pass is left alone).

        ``wrt`` names a parameter instead (as :meth:`named_parameters` names
        it: ``"weight"``, ``"0.bias"``; or the :class:`Parameter` itself):
        :math:`\partial y / \partial \theta`, ``y.shape + θ.shape``, from the
        parameter gradients of one backward pass per output coordinate
        (:func:`~nn_from_scratch.function.jacobian_from_parameter_grads`); the
        parameters' ``.grad`` are left as they were.
        """
        ctx = self._require_ctx("jacobian") if x is None and not more else self.run(x, *more, update_state=False)
        return self.jacobian_from(ctx) if wrt is None else self.parameter_jacobian_from(ctx, wrt)

    def parameter_jacobian_from(self, ctx: Context, wrt: Union[str, Parameter]) -> Any:
        r""":math:`\partial y / \partial \theta` of the pass ``ctx`` for the parameter ``wrt`` (its name, or itself)."""
        return jacobian_from_parameter_grads(lambda g, c: self.backward_from(c, g, input_grad=False), ctx,
                                             self._parameter(wrt), self.parameters())

    def evaluate(self, x: Any, *more: Any) -> Any:
        """``f(x)`` without keeping a pass and without changing the node's state."""
        return self.run(x, *more, update_state=False).y

    def __call__(self, x: Any, *more: Any, name: Optional[str] = None) -> Any:
        """``forward`` on arrays; on graph placeholders the call is recorded instead (``name`` names the node)."""
        if isinstance(x, GraphValue) or any(isinstance(value, GraphValue) for value in more):
            first = next(value for value in (x,) + more if isinstance(value, GraphValue))
            return first.apply(self, (x,) + more, name)
        if name is not None:
            raise TypeError(f"{type(self).__name__}: name= is taken only when the node is called on graph placeholders")
        return self.forward(x, *more)

    # ------------------------------------------------------------------ what the node is
    def config(self) -> Dict[str, Any]:
        """The constructor's arguments as plain JSON values: ``type(node).from_config(node.config())`` builds its twin.

        Only the architecture is described: the weights come from the state
        dict, so the initialisation (``init``, ``rng``) is left out.  A
        container describes its own arguments here and its nodes through
        :meth:`children` (``from_config(config, children)``).  Every node the
        library ships defines it; a node of one's own defines it (and is
        registered with ``nn_from_scratch.registry.register_node``) to be
        saved without its code.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not describe its constructor's arguments: define "
            f"{type(self).__name__}.config() returning them as plain JSON values (see Node.config)")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], children: Sequence[Tuple[Optional[str], "Node"]] = ()) -> "Node":
        """The node :meth:`config` describes: ``cls(**config)``; a container takes its nodes as ``children``."""
        if children:
            raise ValueError(f"{cls.__name__} holds no nodes, but {len(children)} were given to from_config")
        return cls(**config)

    @classmethod
    def _from_positional(cls, config: Mapping[str, Any], children: Sequence[Any], key: str) -> "Node":
        """``cls(*config[key])``, for a constructor that takes its arguments one by one (``Reshape(2, -1)``)."""
        rest = dict(config)
        positional = rest.pop(key, ())
        if rest or children:
            raise ValueError(f"{cls.__name__}.from_config takes only {key!r}, got {sorted(rest) or 'children'}")
        return cls(*positional)

    def _config_of(self, *names: str, **values: Any) -> Dict[str, Any]:
        """The attributes ``names`` and the ``values`` given, as plain JSON values (see :func:`plain`)."""
        return {**{name: plain(getattr(self, name)) for name in names},
                **{key: plain(value) for key, value in values.items()}}

    # ------------------------------------------------------------------ the hooks a layer writes
    def _forward(self, x: Any, ctx: Context) -> Any:
        """``y = f(x)``; store on ``ctx`` what the derivative needs (``ctx.x``, ``ctx.inputs``, ``ctx.xp`` are set)."""
        raise NotImplementedError

    # _vjp(g, ctx) -> Jᵀg and _jacobian(ctx) -> J: define one; Function derives the other from it.

    def _accumulate_grads(self, g: Any, ctx: Context) -> None:
        """Add ``dL/dθ = (∂y/∂θ)ᵀ g`` into each parameter's ``.grad``; nothing to do without parameters."""

    def _backward(self, g: Any, ctx: Context, input_grad: InputGrad) -> Any:
        """Parameter gradients, then the input gradient; a layer whose two share work overrides this one hook.

        ``input_grad`` is one bool, or a tuple of one per input when they differ
        (:func:`~nn_from_scratch.function.input_flags` reads either); a gradient
        computed for an input flagged false is dropped by ``backward_from``.
        """
        self._accumulate_grads(g, ctx)
        return self._vjp(g, ctx) if input_grad else None

    def _check_input(self, x: Any, *more: Any) -> None:
        """Raise ``ValueError`` for inputs this node cannot take (beyond ``input_shape``)."""

    # ------------------------------------------------------------------ inputs, and how the node shows
    def _prepare_inputs(self, inputs: Tuple[Any, ...]) -> Tuple[Tuple[Any, ...], dict]:
        xs = tuple(_as_constant(value) if i in self.constant_inputs else
                   as_float_array(value, "x" if self.num_inputs == 1 else f"input {i}")
                   for i, value in enumerate(inputs))
        self._check_shape(xs[0])
        self._check_namespace(namespace_of(*xs))
        self._check_input(*xs)
        return xs, {}

    def _parameter(self, wrt: Any) -> Parameter:
        """The parameter ``wrt`` names (a name of :meth:`named_parameters`, or one of the node's Parameters)."""
        named = dict(self.named_parameters())
        if isinstance(wrt, Parameter):
            if any(p is wrt for p in named.values()):
                return wrt
            raise ValueError(f"{type(self).__name__}.jacobian: wrt= is a Parameter of another node; the parameters of "
                             f"this one are {sorted(named)}")
        if not isinstance(wrt, str):
            raise TypeError(f"{type(self).__name__}.jacobian: wrt= takes a parameter's name or the Parameter, got "
                            f"{type(wrt).__name__}")
        if wrt not in named:
            raise ValueError(f"{type(self).__name__}.jacobian: no parameter named {wrt!r}; "
                             + (f"the parameters are {list(named)}" if named else "the node has no parameters"))
        return named[wrt]

    def _check_shape(self, x: Any) -> None:
        expected, shape = self.input_shape, tuple(x.shape)
        if expected is not None and (len(shape) != len(expected)
                                     or any(e is not None and e != d for e, d in zip(expected, shape))):
            shown = tuple("any" if e is None else e for e in expected)
            raise ValueError(f"{type(self).__name__} expects input of shape {shown}, got {shape}")

    def _check_namespace(self, xp: Any) -> None:
        """The node's own parameters must live in the inputs' array namespace (see :mod:`nn_from_scratch.backend`)."""
        for name, value in vars(self).items():
            if type(value) is Parameter and namespace_of(value.value) is not xp:
                raise TypeError(f"{type(self).__name__}: the input is a {xp.__name__} array but {name} lives in "
                                f"{namespace_of(value.value).__name__}; move the model with "
                                "nn_from_scratch.backend.set_backend")

    def extra_repr(self) -> str:
        return "" if self.input_shape is None else f"input_shape={self.input_shape}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def plain(value: Any) -> Any:
    """``value`` as a plain JSON value: a tuple as a list, a dtype by its name, a NumPy scalar as Python's."""
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return np.dtype(value).name
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{type(value).__name__} {value!r} is not a plain JSON value")


def _as_constant(value: Any) -> Any:
    """A constant input (indices, a mask) as given: an array keeps its dtype and namespace, anything else NumPy's."""
    return value if is_array(value) else np.asarray(value)


def _normalize_shape(shape: ShapeLike) -> Optional[Tuple[Optional[int], ...]]:
    if shape is None:
        return None
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    result = tuple(None if d is None else int(d) for d in shape)
    if any(d is not None and d < 1 for d in result):
        raise ValueError(f"input_shape must hold positive sizes (or None for any size), got {shape}")
    return result


class GraphValue:
    """A value of a graph under construction: a node called on one records the call instead of computing.

    The placeholders of the functional Graph (``containers/placeholders.py``)
    subclass it; :meth:`Node.__call__` hands the call to :meth:`apply`.
    """

    __slots__ = ()

    def apply(self, node: Node, inputs: Tuple[Any, ...], name: Optional[str]) -> Any:
        """Record ``node(*inputs)`` and return the placeholder(s) of its output."""
        raise NotImplementedError
