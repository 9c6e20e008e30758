r"""The fully connected layer, with torch.nn.Linear's weight layout and default initialisation."""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np

from ..node import Context, RowwiseNode
from ..parameter import Parameter
from ..random import as_generator

__all__ = ["Linear", "float_dtype", "init_weight", "positive_sizes"]

Initializer = Union[str, Callable[[Tuple[int, ...], np.random.Generator], np.ndarray]]
INITS = ("torch", "he", "xavier", "zeros")


def positive_sizes(**sizes: Any) -> Tuple[int, ...]:
    """The layer sizes given by keyword (``in_features=3, ...``) as ints, or ``ValueError`` naming the bad one."""
    for name, value in sizes.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return tuple(int(value) for value in sizes.values())


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
    r"""Fully connected layer :math:`y = x W^\top + b` over any leading axes.

    ``weight`` has shape ``(out_features, in_features)`` and ``bias``
    ``(out_features,)``, as in ``torch.nn.Linear``, so weights move between
    the two unchanged.  With :math:`x` of shape ``(N, in)`` and upstream
    gradient :math:`G = \partial L/\partial y` of shape ``(N, out)``:

    .. math::
        \frac{\partial y_{n,o}}{\partial x_{n,i}} = W_{o,i}, \qquad
        \frac{\partial L}{\partial x} = G W, \qquad
        \frac{\partial L}{\partial W} = G^\top x, \qquad
        \frac{\partial L}{\partial b} = \sum_n G_{n,:}.

    Parameter gradients are *added* into ``weight.grad`` and ``bias.grad``
    with :meth:`~nn_from_scratch.parameter.Parameter.accumulate` (right after
    ``zero_grad`` the product :math:`G^\top x` is written straight into ``weight.grad``).
    The layer computes in its own dtype (``dtype=np.float32`` for a float32
    model); inputs are cast to it.  ``init`` picks the initial weights (see
    :func:`init_weight`), ``rng`` a ``numpy.random.Generator`` or a seed.

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
    def matrix(self) -> np.ndarray:
        """The matrix :math:`W` of shape ``(out_features, in_features)`` the layer applies (a view of the Parameter)."""
        return self.weight.value.T if self.transpose_weight else self.weight.value

    @property
    def dtype(self) -> np.dtype:
        return self.weight.dtype

    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear expects input of shape (..., {self.in_features}), got {x.shape}"
            )

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        x2 = x.astype(self.dtype, copy=False).reshape(-1, self.in_features)
        y = x2 @ self.matrix.T
        if self.bias is not None:
            y += self.bias.value
        ctx.x2 = x2
        return y.reshape(x.shape[:-1] + (self.out_features,))

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        dx = g.reshape(-1, self.out_features) @ self.matrix
        return dx.reshape(ctx.x.shape).astype(ctx.x.dtype, copy=False)

    def _accumulate_grads(self, g: np.ndarray, ctx: Context) -> None:
        g2 = g.reshape(-1, self.out_features)
        if self.transpose_weight:
            self.weight.accumulate(np.matmul, ctx.x2.T, g2)
        else:
            self.weight.accumulate(np.matmul, g2.T, ctx.x2)
        if self.bias is not None:
            self.bias.accumulate(np.sum, g2, axis=0)

    def _row_jacobian(self, ctx: Context) -> np.ndarray:
        return np.broadcast_to(self.matrix, ctx.x.shape[:-1] + (self.out_features, self.in_features))

    def extra_repr(self) -> str:
        tied = ", transpose_weight=True" if self.transpose_weight else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}{tied}"
