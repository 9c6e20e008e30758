r"""The recurrent cells, one time step each: RNNCell, LSTMCell and GRUCell, as torch's.

A cell maps an input :math:`x` ``(N, input_size)`` and a state to the next
state, by the step of :mod:`nn_from_scratch.nodes.recurrence` with
:math:`a^x = x W_{ih}^\top + b_{ih}`; the input gradient and the parameter
gradients are

.. math::
    \frac{\partial L}{\partial x} = \frac{\partial L}{\partial a^x} W_{ih}, \quad
    \frac{\partial L}{\partial h} = \frac{\partial L}{\partial a^h} W_{hh} + \text{direct}, \quad
    \frac{\partial L}{\partial W_{ih}} = \Big(\frac{\partial L}{\partial a^x}\Big)^{\!\top} x, \quad
    \frac{\partial L}{\partial W_{hh}} = \Big(\frac{\partial L}{\partial a^h}\Big)^{\!\top} h,

the biases' gradients the column sums of :math:`\partial L/\partial a^x` and
:math:`\partial L/\partial a^h`.  The state is an optional input after ``x``
(zeros when left out, as torch's ``hx=None``); the LSTM's takes torch's
tuple ``cell(x, (h, c))`` or two inputs ``cell(x, h, c)``.  Without a batch
axis (``x`` ``(input_size,)``, ``h`` ``(hidden_size,)``) the outputs have
none either.  A backward pass with one flag per input
(``backward_from(ctx, g, input_grad=(False, True))``, the step of a loop
through time that needs only the state's gradient) skips the products of the
inputs flagged false.

:class:`RecurrentNode` is what the cells and the sequence layers of
:mod:`nn_from_scratch.nodes.recurrent` share: the optional state inputs, the
layer's dtype, torch's weight names.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..backend import namespace_of, numpy_dtype
from ..context import Context, as_float_array
from ..function import InputGrad, input_flags
from ..node import Node
from ..random import as_generator
from .linear import config_size, float_dtype
from .recurrence import Elman, GRUStep, LSTMStep, Recurrence, check_sizes, recurrent_parameters

__all__ = ["GRUCell", "LSTMCell", "RNNCell", "RecurrentNode"]

STATE_NAMES = ("h", "c")


class RecurrentNode(Node):
    """Optional state inputs after ``x`` (torch's tuple for the LSTM, None for zeros), cast to the layer's dtype."""

    recurrence: Recurrence
    with_lengths = False  # the sequence layers take lengths (or a mask) after the state
    input_size: int
    hidden_size: int
    bias: bool  # as torch's: whether the layer has biases (they are bias_ih, bias_hh)
    _first_weight = "weight_ih"  # the parameter whose dtype is the layer's

    @property
    def dtype(self) -> Any:
        """The dtype the layer computes in: its parameters' (in their namespace, once the model is moved)."""
        return getattr(self, self._first_weight).dtype

    def _call_inputs(self, inputs: Tuple[Any, ...]) -> Tuple[Any, ...]:
        states = self.recurrence.states
        # torch's tuple (h, c) as two inputs; None alone for both: (x, None), and a layer's (x, None, lengths)
        alone = len(inputs) > 1 and inputs[1] is None and len(inputs) <= states + self.with_lengths
        whole = len(inputs) > 1 and (isinstance(inputs[1], tuple) or alone)
        if states > 1 and whole:
            given = (None,) * states if inputs[1] is None else inputs[1]
            if len(given) != states:
                raise ValueError(f"{type(self).__name__}: the state is a tuple (h, c), got {len(given)} arrays")
            inputs = inputs[:1] + tuple(given) + inputs[2:]
        most = 1 + states + self.with_lengths
        if not 1 <= len(inputs) <= most:
            names = ", ".join(["x"] + [f"{name}0" for name in STATE_NAMES[:states]]
                              + (["lengths"] if self.with_lengths else []))
            raise TypeError(f"{type(self).__name__} takes the inputs ({names}), all but x optional; got {len(inputs)}"
                            f"{'' if states == 1 else ' (give the state as (h0, c0) or as two inputs)'}")
        return inputs

    def _state_shape(self, x: Any, index: int) -> Tuple[int, ...]:
        """The shape state ``index`` must have for the input ``x``."""
        raise NotImplementedError

    def _check_x(self, x: Any) -> None:
        raise NotImplementedError

    def _prepare_inputs(self, inputs: Tuple[Any, ...]) -> Tuple[Tuple[Any, ...], dict]:
        x = as_float_array(inputs[0], "x")
        self._check_x(x)
        xp = namespace_of(x)
        self._check_namespace(xp)  # before zeros are made in the parameters' dtype
        xs: List[Any] = [x]
        for i, value in enumerate(inputs[1:1 + self.recurrence.states]):
            shape = self._state_shape(x, i)
            name = f"{STATE_NAMES[i]}0" if self.with_lengths else STATE_NAMES[i]
            state = xp.zeros(shape, dtype=self.dtype) if value is None else as_float_array(value, name)
            if tuple(state.shape) != shape:
                raise ValueError(f"{type(self).__name__}: {name} must have shape {shape} for an input of shape "
                                 f"{tuple(x.shape)}, got {tuple(state.shape)}")
            xs.append(state)
        xs += [self._constant(value, x) for value in inputs[1 + self.recurrence.states:]]
        self._check_namespace(namespace_of(*xs))
        return tuple(xs), {}

    def _constant(self, value: Any, x: Any) -> Any:
        """A sequence layer's lengths or mask, checked (a cell takes none: its count refuses one)."""
        raise NotImplementedError

    def _parameter_values(self, suffix: str = "") -> Tuple[Any, Any, Any, Any]:
        """``W_ih, W_hh, b_ih, b_hh`` (the biases None without bias) of the weights named with ``suffix``."""
        def value(name: str) -> Any:
            p = getattr(self, name + suffix, None)
            return None if p is None else p.value
        return value("weight_ih"), value("weight_hh"), value("bias_ih"), value("bias_hh")

    def _gradients(self, g: Any, ctx: Context, flags: Tuple[bool, ...], parameters: bool) -> Any:
        """The inputs' gradients (None where ``flags`` is false), and the parameters' accumulated if asked."""
        raise NotImplementedError

    def _backward(self, g: Any, ctx: Context, input_grad: InputGrad) -> Any:
        flags = input_flags(input_grad, len(ctx.inputs))
        result = self._gradients(g, ctx, flags, parameters=True)
        return result if any(flags) else None

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return self._gradients(g, ctx, (True,) * len(ctx.inputs), parameters=False)

    def _cast(self, xp: Any, value: Any) -> Any:
        return xp.astype(value, self.dtype, copy=False)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class _Cell(RecurrentNode):
    """A cell: one step of its recurrence on ``(x, state)``, the parameters ``weight_ih``, ... as torch's cell."""

    def __init__(self, recurrence: Recurrence, input_size: int, hidden_size: int, bias: bool, rng: Any,
                 dtype: Any) -> None:
        self.input_size, self.hidden_size = check_sizes(input_size, hidden_size)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        dtype = float_dtype(np.float64 if dtype is None else dtype)
        super().__init__()
        self.recurrence, self.bias = recurrence, bool(bias)
        self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh = recurrent_parameters(
            recurrence.gates, self.input_size, self.hidden_size, bool(bias), as_generator(rng), dtype)

    def config(self) -> Dict[str, Any]:
        extra = {"nonlinearity": self.nonlinearity} if isinstance(self.recurrence, Elman) else {}
        return self._config_of("input_size", "hidden_size", "bias", **extra,
                               dtype=numpy_dtype(self.weight_ih.value))

    @classmethod
    def config_elements(cls, config: Dict[str, Any]) -> int:
        """The weights' elements, ``G H (I + H + 2)`` for ``G`` gates, from an unchecked config."""
        hidden = config_size(config, "hidden_size")
        return cls._gates * hidden * (config_size(config, "input_size") + hidden + 2)

    def _check_x(self, x: Any) -> None:
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__} expects x of shape (N, {self.input_size}) or ({self.input_size},)"
                             f" (one sample), got {tuple(x.shape)}")

    def _state_shape(self, x: Any, index: int) -> Tuple[int, ...]:
        return tuple(x.shape[:-1]) + (self.hidden_size,)

    # x: (N, I) or (I,), the state (N, H) or (H,); inside, everything is (N, ·).
    def _forward(self, *args: Any) -> Any:
        *xs, ctx = args
        xp = ctx.xp
        rows = (-1, self.input_size)
        ctx.X = X = xp.reshape(self._cast(xp, xs[0]), rows)
        n = X.shape[0]
        ctx.S = S = tuple(xp.reshape(self._cast(xp, s), (n, self.hidden_size)) for s in xs[1:]) or tuple(
            xp.zeros((n, self.hidden_size), dtype=self.dtype) for _ in range(self.recurrence.states))
        w_ih, w_hh, b_ih, b_hh = self._parameter_values()
        a_x = X @ w_ih.T  # a^x = x W_ihᵀ + b_ih
        if b_ih is not None:
            a_x += b_ih
        new, ctx.saved = self.recurrence.step(xp, a_x, S, w_hh, b_hh)
        shape = tuple(xs[0].shape[:-1]) + (self.hidden_size,)
        out = tuple(xp.reshape(s, shape) for s in new)
        return out[0] if len(out) == 1 else out

    def _gradients(self, g: Any, ctx: Context, flags: Tuple[bool, ...], parameters: bool) -> Any:
        xp = ctx.xp
        n = ctx.X.shape[0]
        gs = g if isinstance(g, tuple) else (g,)
        d_state = tuple(xp.reshape(self._cast(xp, part), (n, self.hidden_size)) for part in gs)
        d_ax, d_ah, direct = self.recurrence.step_back(xp, d_state, ctx.saved)
        w_ih, w_hh, _, _ = self._parameter_values()
        if parameters:
            self.weight_ih.accumulate(d_ax.T @ ctx.X)  # dL/dW_ih = (dL/da^x)ᵀ x
            self.weight_hh.accumulate(d_ah.T @ ctx.S[0])  # dL/dW_hh = (dL/da^h)ᵀ h
            if self.bias_ih is not None:
                self.bias_ih.accumulate(xp.sum(d_ax, axis=0))
                self.bias_hh.accumulate(xp.sum(d_ah, axis=0))
        inputs = ctx.inputs
        grads: List[Optional[Any]] = [None] * len(inputs)
        if flags[0]:
            grads[0] = d_ax @ w_ih  # dL/dx = (dL/da^x) W_ih
        for i in range(1, len(inputs)):
            if flags[i]:
                part = d_ah @ w_hh if i == 1 else None  # dL/dh = (dL/da^h) W_hh + the direct part
                part = direct[i - 1] if part is None else (part if direct[i - 1] is None else part + direct[i - 1])
                grads[i] = part
        out = [None if d is None else xp.astype(xp.reshape(d, tuple(v.shape)), v.dtype, copy=False)
               for d, v in zip(grads, inputs)]
        return out[0] if len(out) == 1 else tuple(out)


class RNNCell(_Cell):
    r"""An Elman cell, torch's ``RNNCell``: :math:`h' = \phi(x W_{ih}^\top + b_{ih} + h W_{hh}^\top + b_{hh})`.

    Shapes: ``x`` ``(N, input_size)``, ``h`` and ``h'`` ``(N, hidden_size)``;
    ``weight_ih`` ``(H, I)``, ``weight_hh`` ``(H, H)``, ``bias_ih``,
    ``bias_hh`` ``(H,)``.  :math:`\phi` is ``nonlinearity``, tanh or ReLU;
    the derivative (:class:`~nn_from_scratch.nodes.recurrence.Elman`):

    .. math::
        \frac{\partial h'}{\partial x} = \operatorname{diag}(\phi'(a))\, W_{ih}, \qquad
        \frac{\partial h'}{\partial h} = \operatorname{diag}(\phi'(a))\, W_{hh}, \qquad
        \tanh' = 1 - h'^2.

    ``cell(x)`` starts from :math:`h = 0`; ``cell(x, h)`` from ``h``.  The
    layer computes in its ``dtype`` (float64 unless given; inputs are cast
    to it) and draws its weights from ``rng`` as torch does,
    :math:`U(-1/\sqrt H, 1/\sqrt H)`; the state-dict keys are torch's.
    """

    _gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh", *,
                 rng: Any = None, dtype: Any = None) -> None:
        super().__init__(Elman(nonlinearity), input_size, hidden_size, bias, rng, dtype)
        self.nonlinearity = nonlinearity

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.nonlinearity == "tanh" else f", nonlinearity={self.nonlinearity!r}")


class LSTMCell(_Cell):
    r"""An LSTM cell, torch's ``LSTMCell``: ``(h', c') = cell(x, (h, c))``.

    With :math:`a = x W_{ih}^\top + b_{ih} + h W_{hh}^\top + b_{hh}` ``(N, 4H)``
    split into torch's gates ``i, f, g, o``:

    .. math::
        c' = \sigma(a_f) \odot c + \sigma(a_i) \odot \tanh(a_g), \qquad h' = \sigma(a_o) \odot \tanh c',

    the derivative as :class:`~nn_from_scratch.nodes.recurrence.LSTMStep`
    states it.  Shapes: ``x`` ``(N, I)``, ``h``, ``c`` ``(N, H)``;
    ``weight_ih`` ``(4H, I)``, ``weight_hh`` ``(4H, H)``, biases ``(4H,)``.
    The state is given as torch's tuple ``(h, c)`` or as two inputs; the
    output is the tuple ``(h', c')`` (two outputs).
    """

    _gates = 4

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, rng: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(LSTMStep(), input_size, hidden_size, bias, rng, dtype)


class GRUCell(_Cell):
    r"""A GRU cell, torch's ``GRUCell``: with torch's gates ``r, z, n``,

    .. math::
        r = \sigma(a^x_r + a^h_r), \quad z = \sigma(a^x_z + a^h_z), \quad
        n = \tanh(a^x_n + r \odot a^h_n), \qquad h' = (1 - z) \odot n + z \odot h,

    :math:`a^x = x W_{ih}^\top + b_{ih}`, :math:`a^h = h W_{hh}^\top + b_{hh}`
    ``(N, 3H)``; the derivative as :class:`~nn_from_scratch.nodes.recurrence.GRUStep`
    states it.  ``weight_ih`` ``(3H, I)``, ``weight_hh`` ``(3H, H)``, biases ``(3H,)``.
    """

    _gates = 3

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, rng: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(GRUStep(), input_size, hidden_size, bias, rng, dtype)
