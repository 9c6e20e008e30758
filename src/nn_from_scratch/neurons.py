r"""The course's layers: ``Linear``, ``Convolution`` (with weights) and its ``ReLU``, with the course's faces.

Each is a thin layer over the library's own nodes (``.node``):
:class:`Linear` over :class:`~nn_from_scratch.nodes.Linear`,
:class:`Convolution` over :class:`~nn_from_scratch.nodes.Conv2d` and a bias
per output position, :class:`ReLU` over :class:`~nn_from_scratch.nodes.ReLU`.
The numbers are those nodes' (checked against finite differences and torch);
what is the course's is the faces, the shapes and the weight layout
(:mod:`nn_from_scratch.interfaces`; ``docs/course.md`` names every place this
layer differs from the course's code).  The weights are drawn, as the
course's were, from :math:`U(-r, r)` with ``r = W_init_range`` and NumPy's
global generator (``rng=`` takes a seed or a generator instead), and kept in
float64 (the course's were float32).
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .backend import as_backend_array, namespace_of
from .containers import Sequential
from .context import Context, as_float_array
from .interfaces import Neuron, Node, Optimizer, contract, course_layout
from .node import Node as LibraryNode
from .nodes import Conv2d
from .nodes import Linear as LinearNode
from .nodes import ReLU as ReLUNode
from .nodes.course import course_sizes
from .parameter import Parameter
from .random import as_generator

__all__ = ["Convolution", "Linear", "ReLU"]


def _init_range(value: Any, who: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < 0:
        raise ValueError(f"{who}: W_init_range must be a finite number >= 0, got {value!r}")
    return float(value)


def _draw(rng: Any, bound: float, shape: Tuple[int, ...]) -> np.ndarray:
    """:math:`U(-r, r)` of ``shape``: from NumPy's global generator (the course's) or from ``rng``."""
    source = np.random if rng is None else as_generator(rng)
    return source.uniform(-bound, bound, shape)


def _assign(parameter: Parameter, value: Any) -> None:
    """Write ``value`` (any namespace) into the Parameter, in its namespace and dtype."""
    xp = namespace_of(parameter.value)
    parameter.value[...] = xp.astype(as_backend_array(value, xp), parameter.dtype)


def _copy(array: Any) -> Any:
    return namespace_of(array).asarray(array, copy=True)


def _weights(value: Any, shape: Tuple[int, ...], name: str, who: str) -> Any:
    """A given weight array, checked against the layer's layout."""
    array = as_float_array(value, name)
    if tuple(array.shape) != shape:
        raise ValueError(f"{who}: {name} must have shape {shape}, got {tuple(array.shape)}")
    return array


class _Neuron(Neuron):
    """What the course's layers share: a library node doing the work, its gradients kept as the course's ``_W_pd``."""

    node: LibraryNode

    def reset(self) -> None:
        super().reset()
        self._grads_ready = False
        if hasattr(self, "node"):
            self.node.reset()

    def __call__(self, x: Any, y: Any = None) -> Any:
        return self.node.forward(x)

    def _backward(self, input_pd: Any, reset_after: bool) -> Any:
        self._require_pass("backward")
        if input_pd is None:
            raise ValueError(f"{type(self).__name__}.backward: partial derivatives are not provided")
        g = self._change_dims(as_float_array(input_pd, "input_pd"), self._inner_ndim)
        self.node.zero_grad()
        dx = self.node.backward(g, reset_after=False)
        self._grads_ready = True
        if reset_after:
            self.reset()
        return self._change_dims(dx, self._input_ndim)

    def jacobian(self, X: Any = None, y: Any = None) -> Any:
        r""":math:`\partial y/\partial x` in the course's layout ``x.shape + y.shape`` (inner shapes), at the last
        forward or at ``X``."""
        if X is None:
            self._require_pass("jacobian")
            return course_layout(self.node.jacobian(), self._inner_ndim)
        return course_layout(self.node.jacobian(self._change_dims(as_float_array(X, "X"), self._inner_ndim)),
                             self._inner_ndim)

    def _parameter_jacobian(self, X: Any, wrt: str) -> Any:
        """The library's ``jacobian(wrt=...)``, ``y.shape + θ.shape``, at the last forward or at ``X``."""
        if X is None:
            self._require_pass("W_jacobian")
            return self.node.jacobian(wrt=wrt)
        return self.node.jacobian(self._change_dims(as_float_array(X, "X"), self._inner_ndim), wrt=wrt)

    def _gradients(self, what: str) -> None:
        if not self._grads_ready:
            raise RuntimeError(f"{type(self).__name__}.{what}: backward must run first (there is no gradient since "
                               "the last reset)")

    def _optimize(self, optimizer: Optimizer, weights: List[Any], gradients: List[Any]) -> List[Any]:
        super().optimize_weights(optimizer)
        self._gradients("optimize_weights")
        updated = optimizer.optimize(weights, gradients)
        if updated is None or len(updated) != len(weights):
            raise TypeError(f"{type(self).__name__}.optimize_weights: {type(optimizer).__name__}.optimize must "
                            f"return the {len(weights)} updated arrays")
        return list(updated)


class Linear(_Neuron):
    r"""The course's fully connected layer: :math:`Y = [1, X]\, W`, the bias in row 0 of ``W`` ``(in+1, out)``.

    Over rows :math:`X` ``(N, in)``, with :math:`W = \begin{bmatrix} b \\ A \end{bmatrix}` and
    :math:`G = \partial L/\partial Y` ``(N, out)``:

    .. math::
        Y = X A + \mathbf 1 b, \qquad
        \frac{\partial L}{\partial X} = G A^\top, \qquad
        \frac{\partial L}{\partial W} = [\mathbf 1, X]^\top G, \qquad
        \frac{\partial Y_{n,o}}{\partial W_{i,j}} = \delta_{oj}\, [1, X]_{n,i}.

    :math:`A = ` ``node.weight.T`` and :math:`b = ` ``node.bias`` of the
    library's :class:`~nn_from_scratch.nodes.Linear` (``.node``, torch's
    layout).  ``input_dim``/``output_dim``: ``n`` (vectors) or ``(N, n)``
    (rows; any number of rows is taken).  ``W`` gives the weights, else they
    are drawn from :math:`U(-r, r)`, ``r = W_init_range``.

    ``backward(input_pd, reset_after=False, use_jacobian=False)`` returns
    :math:`\partial L/\partial X` and keeps :math:`\partial L/\partial W` as
    ``_W_pd``; with ``use_jacobian=True`` both come from the dense Jacobians
    (:meth:`jacobian`, :meth:`W_jacobian`) instead, to the same numbers.
    """

    def __init__(self, input_dim: Node.DIM, output_dim: Node.DIM, W: Optional[Any] = None,
                 W_init_range: float = 1.0, *, rng: Any = None) -> None:
        super().__init__(input_dim, output_dim, inner_ndim=2)
        if len(self._input_dim) > 2 or len(self._output_dim) != len(self._input_dim):
            raise ValueError(f"Linear takes vectors (n,) to vectors or rows (N, n) to rows, got input_dim "
                             f"{input_dim!r} and output_dim {output_dim!r}")
        if len(self._input_dim) == 2 and self._input_dim[0] != self._output_dim[0]:
            raise ValueError(f"Linear: the input's {self._input_dim[0]} rows must give as many output rows, got "
                             f"output_dim {output_dim!r}")
        self._W_init_range = _init_range(W_init_range, "Linear")
        self._rng = rng
        self._W_dim = (self._input_dim[-1] + 1, self._output_dim[-1])
        self.node = LinearNode(self._input_dim[-1], self._output_dim[-1], init="zeros")
        self.W_init(W)

    def W_init(self, W: Optional[Any] = None) -> None:
        """Set the weights to ``W`` ``(in+1, out)``, or draw them from :math:`U(-r, r)`; forgets the last pass."""
        self.W = _draw(self._rng, self._W_init_range, self._W_dim) if W is None else W
        self.reset()

    @property
    def W(self) -> Any:
        """The weights ``(in+1, out)``: the bias in row 0, then the node's weight transposed (a new array)."""
        xp = namespace_of(self.node.weight.value)
        return xp.concat([xp.reshape(self.node.bias.value, (1, -1)), self.node.weight.value.T], axis=0)

    @W.setter
    def W(self, value: Any) -> None:
        array = _weights(value, self._W_dim, "W", "Linear")
        _assign(self.node.bias, array[0, ...])
        _assign(self.node.weight, array[1:, ...].T)

    _W = W

    @property
    def _W_pd(self) -> Any:
        """:math:`\\partial L/\\partial W` ``(in+1, out)`` of the last backward (None before one, or after a reset)."""
        if not self._grads_ready:
            return None
        xp = namespace_of(self.node.weight.grad)
        return xp.concat([xp.reshape(self.node.bias.grad, (1, -1)), self.node.weight.grad.T], axis=0)

    def backward(self, input_pd: Any, reset_after: bool = False, use_jacobian: bool = False) -> Any:
        """:math:`\\partial L/\\partial X`; :math:`\\partial L/\\partial W` is kept as ``_W_pd``."""
        if not use_jacobian:
            return self._backward(input_pd, reset_after)
        self._require_pass("backward")
        g = self._change_dims(as_float_array(input_pd, "input_pd"), 2)
        dx, dW = contract(self.jacobian(), g), contract(self.W_jacobian(), g)  # sum_y J[x, y] g[y]
        self.node.zero_grad()
        self.node.bias.accumulate(dW[0, ...])
        self.node.weight.accumulate(dW[1:, ...].T)
        self._grads_ready = True
        if reset_after:
            self.reset()
        return self._change_dims(dx, self._input_ndim)

    def W_jacobian(self, X: Any = None) -> Any:
        r""":math:`\partial Y/\partial W` in the course's layout ``W.shape + Y.shape``, ``(in+1, out, N, out)``.

        At the last forward, or at ``X`` (the layer's input ``(N, in)``; the
        course's augmented ``(N, in+1)``, with its column of ones first, is
        taken too).  From the library's ``jacobian(wrt=...)``:
        :math:`\partial Y_{n,o}/\partial W_{i,j} = \delta_{oj} [1, X]_{n,i}`.
        """
        if X is not None:
            X = self._change_dims(as_float_array(X, "X"), 2)
            X = X[:, 1:] if X.shape[-1] == self._W_dim[0] else X
        weight, bias = self._parameter_jacobian(X, "weight"), self._parameter_jacobian(X, "bias")
        xp = namespace_of(weight)
        # library: dY[n,o]/dweight[j,i] and dY[n,o]/dbias[j]; course: W[0, j] = bias[j], W[1 + i, j] = weight[j, i]
        return xp.concat([xp.permute_dims(bias, (2, 0, 1))[None, ...], xp.permute_dims(weight, (3, 2, 0, 1))], axis=0)

    def optimize_weights(self, optimizer: Optimizer) -> None:
        """``W = optimizer.optimize([W], [_W_pd])[0]``."""
        self.W = self._optimize(optimizer, [self.W], [self._W_pd])[0]


class _PositionBias(LibraryNode):
    r"""A bias per output position, the course's convolution bias: :math:`y_{n,o,i,j} = x_{n,o,i,j} + B_{o,i,j}`.

    Shapes: ``x`` and ``y`` ``(N, O, H, W)`` (or one ``(O, H, W)``), ``B`` =
    ``bias`` ``(O, H, W)``:

    .. math::
        \frac{\partial L}{\partial x} = G, \qquad \frac{\partial L}{\partial B} = \sum_n G_n .
    """

    def __init__(self, value: np.ndarray) -> None:
        super().__init__()
        self.bias = Parameter(np.asarray(value, dtype=np.float64))

    def _check_input(self, x: Any) -> None:
        if x.ndim not in (3, 4) or tuple(x.shape[-3:]) != self.bias.shape:
            raise ValueError(f"Convolution: its bias has one value per output position {self.bias.shape}, so the "
                             f"convolution's output must be (N, *{self.bias.shape}), got {tuple(x.shape)}")

    def _forward(self, x: Any, ctx: Context) -> Any:
        return x + self.bias.value  # y = x + B

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return g  # dL/dx = G

    def _accumulate_grads(self, g: Any, ctx: Context) -> None:
        self.bias.accumulate(ctx.xp.sum(g, axis=0) if g.ndim == 4 else g)  # dL/dB = sum_n G_n


class Convolution(_Neuron):
    r"""The course's convolution: ``input_dim`` ``(N, C, H, W)``, ``kernel_size`` :math:`k`, a bias per position.

    With :math:`p` the padding, :math:`O` = ``output_layers``,
    :math:`H_o = H + 2p - k + 1` (likewise :math:`W_o`), weights :math:`W`
    ``(O, C, k, k)`` and, with ``use_bias``, a bias :math:`B` ``(O, H_o, W_o)``
    (one number per output position, not one per channel as in torch):

    .. math::
        y_{n,o,i,j} = B_{o,i,j} + \sum_{c,a,b} W_{o,c,a,b}\, \tilde x_{n,c,i+a,j+b}, \qquad
        \frac{\partial L}{\partial B} = \sum_n G_n,

    :math:`\tilde x` the input with :math:`p` zeros around.  The convolution is
    the library's :class:`~nn_from_scratch.nodes.Conv2d` (``.node[0]``, its
    input gradient a transposed convolution cropped of the padding), the
    bias ``.node[1]``.  ``W`` and ``B`` give the weights, else they are drawn
    from :math:`U(-r, r)`.  Any batch size is taken; a single image
    ``(H, W)`` or ``(C, H, W)`` is taken as a batch of one.
    """

    def __init__(self, input_dim: Sequence[int], kernel_size: int, output_layers: int = 1, padding: int = 0,
                 W: Optional[Any] = None, B: Optional[Any] = None, use_bias: bool = True,
                 W_init_range: float = 1.0, *, rng: Any = None) -> None:
        sizes = course_sizes(input_dim, "Convolution", "input_dim")
        if isinstance(input_dim, (int, np.integer)) or len(sizes) != 4:
            raise ValueError(f"Convolution: input_dim must be the batch's size (N, C, H, W), got {input_dim!r}")
        n, c, h, w = sizes
        for name, value, low in (("kernel_size", kernel_size, 1), ("output_layers", output_layers, 1),
                                 ("padding", padding, 0)):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"Convolution: {name} must be an int >= {low}, got {value!r}")
        if not isinstance(use_bias, (bool, np.bool_)):
            raise TypeError(f"Convolution: use_bias must be a bool, got {use_bias!r}")
        k, p = int(kernel_size), int(padding)
        if min(h, w) + 2 * p < k:
            raise ValueError(f"Convolution: a {k}x{k} kernel does not fit a {h}x{w} image padded by {p}")
        super().__init__((n, c, h, w), (n, int(output_layers), h + 2 * p - k + 1, w + 2 * p - k + 1), 4)
        self._kernel_size, self._padding, self._output_layers, self._use_bias = k, p, int(output_layers), bool(use_bias)
        self._W_init_range = _init_range(W_init_range, "Convolution")
        self._rng = rng
        self._W_dim = (self._output_layers, self._input_dim[1], k, k)
        conv = Conv2d(self._input_dim[1], self._output_layers, k, padding=p, bias=False, init="zeros")
        if use_bias:
            self._B_dim = self._output_dim[1:]
            self.node = Sequential(conv, _PositionBias(np.zeros(self._B_dim)))
            self.B_init(B)  # the course drew the bias first
        else:
            self.node = conv
        self.W_init(W)

    @property
    def _conv(self) -> Conv2d:
        return self.node[0] if self._use_bias else self.node

    def W_init(self, W: Optional[Any] = None) -> None:
        """Set the kernels to ``W`` ``(O, C, k, k)``, or draw them from :math:`U(-r, r)`; forgets the last pass."""
        self.W = _draw(self._rng, self._W_init_range, self._W_dim) if W is None else W
        self.reset()

    def B_init(self, B: Optional[Any] = None) -> None:
        """Set the bias to ``B`` ``(O, H_o, W_o)``, or draw it from :math:`U(-r, r)`; forgets the last pass."""
        self.B = _draw(self._rng, self._W_init_range, self._B_dim) if B is None else B
        self.reset()

    @property
    def W(self) -> Any:
        """The kernels ``(O, C, k, k)``, torch's layout (a copy of the node's weight)."""
        return _copy(self._conv.weight.value)

    @W.setter
    def W(self, value: Any) -> None:
        _assign(self._conv.weight, _weights(value, self._W_dim, "W", "Convolution"))

    _W = W

    @property
    def B(self) -> Any:
        """The bias ``(O, H_o, W_o)``, one number per output position, a copy (``ValueError`` without a bias)."""
        return _copy(self._bias().bias.value)

    @B.setter
    def B(self, value: Any) -> None:
        _assign(self._bias().bias, _weights(value, self._B_dim, "B", "Convolution"))

    @property
    def _B(self) -> Any:
        if not self._use_bias:
            raise AttributeError("this Convolution has no bias (use_bias=False)")
        return self.B

    def _bias(self) -> _PositionBias:
        if not self._use_bias:
            raise ValueError("Convolution: the bias is not initialized (use_bias=False)")
        return self.node[1]

    @property
    def _W_pd(self) -> Any:
        """:math:`\\partial L/\\partial W` of the last backward (None before one, or after a reset)."""
        return _copy(self._conv.weight.grad) if self._grads_ready else None

    @property
    def _B_pd(self) -> Any:
        """:math:`\\partial L/\\partial B = \\sum_n G_n` of the last backward (None before one, or after a reset)."""
        if not self._use_bias:
            raise AttributeError("this Convolution has no bias (use_bias=False)")
        return _copy(self._bias().bias.grad) if self._grads_ready else None

    def backward(self, input_pd: Any, reset_after: bool = False) -> Any:
        """:math:`\\partial L/\\partial x` (padding included); the weights' gradients kept as ``_W_pd``, ``_B_pd``."""
        return self._backward(input_pd, reset_after)

    def W_jacobian(self, X: Any = None) -> Any:
        """:math:`\\partial y/\\partial W` in the course's layout ``W.shape + y.shape``, at the last pass or ``X``."""
        key = "0.weight" if self._use_bias else "weight"
        return course_layout(self._parameter_jacobian(X, key), 4)

    def optimize_weights(self, optimizer: Optimizer) -> None:
        """``W, B = optimizer.optimize([W, B], [_W_pd, _B_pd])`` (``W`` alone without a bias)."""
        if self._use_bias:
            self.W, self.B = self._optimize(optimizer, [self.W, self.B], [self._W_pd, self._B_pd])
        else:
            self.W = self._optimize(optimizer, [self.W], [self._W_pd])[0]


class ReLU(Node):
    r"""The course's ReLU with the course's shapes: :math:`y = \max(x, 0)`, :math:`\partial y/\partial x = [x > 0]`.

    Its input is brought to four axes (``ReLU(5)`` computes on ``(1, 1, 1, 5)``),
    ``forward`` answers in the size's axes, and ``backward`` answers in the
    four (a ``(5,)`` input's gradient is ``(1, 1, 1, 5)``) and refuses an
    ``input_pd`` whose shape is not the size, as the course's did.  The labs
    import :class:`nn_from_scratch.nodes.ReLU`, the library's, whose shapes are
    the input's; this one is for code that relies on the course's shapes.
    """

    def __init__(self, n_input: Node.DIM) -> None:
        super().__init__(n_input, n_input, 4)
        self.node = ReLUNode()

    def reset(self) -> None:
        super().reset()
        if hasattr(self, "node"):
            self.node.reset()

    def __call__(self, x: Any, y: Any = None) -> Any:
        return self.node.forward(x)

    def jacobian(self, x: Any = None, y: Any = None) -> Any:
        """:math:`\\operatorname{diag}([x > 0])` in the course's layout ``x.shape + y.shape`` (four axes each)."""
        if x is None:
            self._require_pass("jacobian")
            return course_layout(self.node.jacobian(), 4)
        return course_layout(self.node.jacobian(self._change_dims(as_float_array(x, "x"), 4)), 4)

    def backward(self, input_pd: Any = None, reset_after: bool = True) -> Any:
        """:math:`g \\odot [x > 0]` on the four axes (the course's shape)."""
        self._require_pass("backward")
        g = as_float_array(input_pd, "input_pd")
        if tuple(g.shape) != self._input_dim:
            raise ValueError(f"ReLU.backward: invalid partial derivatives' shape: expected {self._input_dim}, got "
                             f"{tuple(g.shape)}")
        dx = self.node.backward(self._change_dims(g, 4), reset_after=False)
        if reset_after:
            self.reset()
        return dx
