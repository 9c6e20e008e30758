r"""The fully connected layer, with torch.nn.Linear's weight layout and default initialisation."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np

from ..context import Context
from ..engine.gradients import add_into
from ..node_shortcuts import RowwiseNode
from ..parameter import Parameter
from ..random import as_generator

__all__ = ["Linear", "config_size", "float_dtype", "init_weight", "positive_sizes"]

Initializer = Union[str, Callable[[Tuple[int, ...], np.random.Generator], np.ndarray]]
INITS = ("torch", "he", "xavier", "zeros")


def positive_sizes(**sizes: Any) -> Tuple[int, ...]:
    """The layer sizes given by keyword (``in_features=3, ...``) as ints, or ``ValueError`` naming the bad one."""
    for name, value in sizes.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return tuple(int(value) for value in sizes.values())


def config_size(config: Any, name: str, default: int = 1) -> int:
    """A size read from an unchecked config, for a class's ``config_elements`` bound: the integer itself, or
    ``default`` for anything else (the constructor refuses that before allocating)."""
    value = config.get(name, default) if isinstance(config, dict) else default
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return max(abs(value), 1)


def float_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as a NumPy floating dtype, or ``TypeError``: a layer computes in a floating type."""
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating type, got {dtype}")
    return dtype


def init_weight(
    init: Initializer, shape: Tuple[int, ...], fan_in: int, fan_out: int, rng: np.random.Generator
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    r"""Draw a weight of ``shape`` and the bias of ``fan_out`` entries for one initialisation scheme.

    * ``'torch'`` (default): :math:`W, b \sim U(-1/\sqrt{\text{fan\_in}}, 1/\sqrt{\text{fan\_in}})`,
      which is what torch's ``kaiming_uniform_(a=\sqrt 5)`` and its bias rule give;
    * ``'he'``: :math:`W \sim \mathcal N(0, 2/\text{fan\_in})`, :math:`b = 0` (for ReLU networks);
    * ``'xavier'``: :math:`W \sim U(-a, a)`, :math:`a = \sqrt{6/(\text{fan\_in} + \text{fan\_out})}`, :math:`b = 0`;
    * ``'zeros'``: everything zero;
    * a callable ``init(shape, rng)`` returning the weight; the bias is then zero.

    Returns ``(weight, bias)`` in float64; the bias is ``None`` when the
    scheme gives zeros.
    """
    if callable(init):
        weight = np.asarray(init(shape, rng), dtype=np.float64)
        if weight.shape != shape:
            raise ValueError(f"the init callable must return shape {shape}, got {weight.shape}")
        return weight, None
    if init == "torch":
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        weight = rng.uniform(-bound, bound, size=shape)
        return weight, rng.uniform(-bound, bound, size=fan_out)
    if init == "he":
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape), None
    if init == "xavier":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, size=shape), None
    if init == "zeros":
        return np.zeros(shape), None
    raise ValueError(f"init must be one of {INITS} or a callable, got {init!r}")


class Linear(RowwiseNode):
    r"""Fully connected layer: on one sample, :math:`y = W x + b`.

    Shapes: ``x`` ``(in_features,)``, ``W`` = ``weight`` ``(out_features, in_features)``,
    ``b`` = ``bias`` ``(out_features,)``, ``y`` ``(out_features,)``; any leading
    axes are a batch.  Over a batch :math:`X` ``(N, in)``, with
    :math:`G = \partial L/\partial Y` ``(N, out)``:

    .. math::
        Y = X W^\top + b, \qquad
        \frac{\partial y_{n,o}}{\partial x_{n,i}} = W_{o,i}, \qquad
        \frac{\partial L}{\partial X} = G W, \qquad
        \frac{\partial L}{\partial W} = G^\top X, \qquad
        \frac{\partial L}{\partial b} = \sum_n G_n.

    The layout is ``torch.nn.Linear``'s, so weights move between the two
    unchanged.  Parameter gradients are *added* into ``weight.grad`` and
    ``bias.grad``.  The layer computes in its own dtype (``dtype=np.float32``
    for a float32 model); inputs are cast to it.  ``init`` picks the initial
    weights (see :func:`init_weight`), ``rng`` a ``numpy.random.Generator`` or
    a seed.

    **Tied weights.**  ``weight=`` takes an existing :class:`Parameter`
    (another layer's) instead of drawing one: both layers then hold the one
    Parameter, its gradient is the sum of both layers' contributions, and a
    model lists it once.  With ``transpose_weight=True`` the layer uses its
    transpose, :math:`W = P^\top` for the given :math:`P` of shape
    ``(in_features, out_features)`` -- the decoder of an autoencoder that
    reuses ``encoder.weight``:

    .. math::
        y = x P + b, \qquad \frac{\partial L}{\partial x} = G P^\top, \qquad
        \frac{\partial L}{\partial P} = x^\top G.

    The layer's dtype is then the Parameter's; its bias is its own.
    :meth:`tied_to` reads the sizes off the Parameter.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        init: Initializer = "torch",
        rng: Any = None,
        dtype: Any = None,
        weight: Optional[Parameter] = None,
        transpose_weight: bool = False,
    ) -> None:
        self.in_features, self.out_features = positive_sizes(in_features=in_features, out_features=out_features)
        if not isinstance(transpose_weight, (bool, np.bool_)):
            raise TypeError(f"transpose_weight must be a bool, got {transpose_weight!r}")
        self.transpose_weight = bool(transpose_weight)
        if weight is not None:
            if not isinstance(weight, Parameter):
                raise TypeError(f"weight must be a Parameter (another layer's, to tie), got {type(weight).__name__}")
            expected = (self.in_features, self.out_features) if self.transpose_weight else (
                self.out_features, self.in_features)
            if weight.shape != expected:
                raise ValueError(
                    f"Linear({self.in_features}, {self.out_features}, transpose_weight={self.transpose_weight}) "
                    f"needs a weight of shape {expected}, got {weight.shape}"
                )
            if dtype is not None and float_dtype(dtype) != weight.dtype:
                raise ValueError(f"dtype {np.dtype(dtype)} differs from the tied weight's dtype {weight.dtype}")
            dtype = weight.dtype
        elif self.transpose_weight:
            raise ValueError("transpose_weight=True needs weight= (the Parameter whose transpose the layer uses)")
        dtype = float_dtype(np.float64 if dtype is None else dtype)
        super().__init__()
        drawn, bias_value = init_weight(
            init, (self.out_features, self.in_features), self.in_features, self.out_features, as_generator(rng)
        )
        self.weight = weight if weight is not None else Parameter(drawn.astype(dtype))
        self.bias: Optional[Parameter] = None
        if bias:
            initial = np.zeros(self.out_features) if bias_value is None else bias_value
            self.bias = Parameter(initial.astype(dtype))

    def config(self) -> Dict[str, Any]:
        if self.transpose_weight:
            raise NotImplementedError("Linear: a layer that uses another layer's weight (transpose_weight=True) "
                                      "cannot be described by its arguments alone")
        return self._config_of("in_features", "out_features", bias=self.bias is not None, dtype=self.dtype)

    @classmethod
    def tied_to(cls, weight: Parameter, *, transpose: bool = False, bias: bool = True, init: Initializer = "torch",
                rng: Any = None) -> "Linear":
        """A Linear layer that uses ``weight`` (another layer's Parameter), or its transpose.

        ``Linear.tied_to(encoder.weight, transpose=True)`` maps the encoder's
        output size back to its input size with :math:`W = P^\top`; the
        sizes come from the Parameter's shape.  ``init`` and ``rng`` draw the
        bias only.
        """
        if not isinstance(weight, Parameter) or weight.value.ndim != 2:
            raise TypeError(f"Linear.tied_to needs a 2-d Parameter, got {weight!r}")
        rows, cols = weight.shape
        in_features, out_features = (rows, cols) if transpose else (cols, rows)
        return cls(in_features, out_features, bias, init=init, rng=rng, weight=weight, transpose_weight=transpose)

    @property
    def matrix(self) -> Any:
        """The matrix :math:`W` of shape ``(out_features, in_features)`` the layer applies (a view of the Parameter)."""
        return self.weight.value.T if self.transpose_weight else self.weight.value

    @property
    def dtype(self) -> Any:
        return self.weight.dtype

    def _check_input(self, x: Any) -> None:
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expects input of shape (..., {self.in_features}), got {tuple(x.shape)}")

    # x: (..., in) is seen as X: (N, in), N the product of the leading axes; G = dL/dy: (N, out).
    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        ctx.X = X = xp.reshape(xp.astype(x, self.dtype, copy=False), (-1, self.in_features))
        y = X @ self.matrix.T  # y = x Wᵀ + b
        if self.bias is not None:
            y += self.bias.value
        return xp.reshape(y, tuple(x.shape[:-1]) + (self.out_features,))

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp = ctx.xp
        dx = xp.reshape(g, (-1, self.out_features)) @ self.matrix  # dL/dx = G W
        return xp.astype(xp.reshape(dx, tuple(ctx.x.shape)), ctx.x.dtype, copy=False)

    def _accumulate_grads(self, g: Any, ctx: Context) -> None:
        G, X = ctx.xp.reshape(g, (-1, self.out_features)), ctx.X
        if ctx.fast:  # the same products, written straight into .grad after zero_grad
            add_into(self.weight, np.matmul, *((X.T, G) if self.transpose_weight else (G.T, X)))
            if self.bias is not None:
                add_into(self.bias, np.sum, G, axis=0)
            return
        self.weight.accumulate(X.T @ G if self.transpose_weight else G.T @ X)  # dL/dW = Gᵀ X  (dL/dP = Xᵀ G)
        if self.bias is not None:
            self.bias.accumulate(ctx.xp.sum(G, axis=0))  # dL/db = Σ_n G_n

    def _row_jacobian(self, ctx: Context) -> Any:
        return ctx.xp.broadcast_to(self.matrix, tuple(ctx.x.shape[:-1]) + (self.out_features, self.in_features))

    def extra_repr(self) -> str:
        tied = ", transpose_weight=True" if self.transpose_weight else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}{tied}"
