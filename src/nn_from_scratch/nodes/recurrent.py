r"""The recurrent layers over whole sequences: RNN (tanh or ReLU), LSTM and GRU, as torch's.

A layer runs its step (:mod:`nn_from_scratch.nodes.recurrence`) over the
time steps :math:`t = 1 \dots T` of a sequence, for ``num_layers`` stacked
layers, each in one or (``bidirectional``) two directions:

.. math::
    s_t = \operatorname{step}(a^x_t, s_{t-1}), \qquad
    a^x_t = x_t W_{ih}^\top + b_{ih}, \qquad y_t = h_t,

a layer's input being the one below's output (both directions'
concatenated, after ``dropout`` in training).  Backpropagation through time
is the chain rule along the sequence: with :math:`J_t = \partial s_t /
\partial s_{t-1}` the step's Jacobian,

.. math::
    \frac{\partial L}{\partial s_{t-1}} = \Big(\frac{\partial L}{\partial s_t}
        + \frac{\partial L}{\partial y_t}\Big) J_t, \qquad
    \frac{\partial L}{\partial W_{hh}} = \sum_t \Big(\frac{\partial L}{\partial a^h_t}\Big)^{\!\top} h_{t-1},
    \qquad \frac{\partial L}{\partial x_t} = \frac{\partial L}{\partial a^x_t} W_{ih},

vectorised over the batch: the loop over time steps is the only Python loop.
:math:`a^x` for all steps is one matrix product before the loop, and the
sums over :math:`t` of the parameter gradients and the input gradient are
one product each after it, so a step costs the recurrent product and the
gates.  With ``ctx.fast`` the loop runs in :mod:`nn_from_scratch.engine.recurrent`
(the same formulas in place, into buffers made once per pass).

**Inputs** (all but ``x`` optional): ``x`` ``(T, N, input_size)``
(``(N, T, input_size)`` with ``batch_first``; ``(T, input_size)`` without
a batch), the initial state ``h0`` ``(num_layers·D, N, hidden_size)``
(and ``c0`` for the LSTM: torch's tuple ``lstm(x, (h0, c0))`` or two inputs;
None for zeros), then ``lengths``: an integer array ``(N,)`` of the
sequences' lengths, as torch's ``pack_padded_sequence`` takes them, or a
boolean mask of ``x``'s (time, batch) axes in ``x``'s layout.  **Outputs**:
``output`` ``(T, N, D·hidden_size)`` (``batch_first``: ``(N, T, ·)``) and
``h_n`` ``(num_layers·D, N, hidden_size)``, and ``c_n`` for the LSTM, as
three outputs (torch's ``(output, (h_n, c_n))`` comes flat, as every node's
outputs do).  With a mask :math:`m_t`, a step that does not count carries
the state and outputs zero,

.. math::
    s_t = m_t\, \operatorname{step}(a^x_t, s_{t-1}) + (1 - m_t)\, s_{t-1}, \qquad y_t = m_t h_t

(a selection, ``where``); for lengths (a mask that is true up to each
length) that is torch's packed sequence, ``h_n`` the state at each
sequence's last step, the reverse direction starting there.

The state arrays a layer returns are plain arrays: handing ``h_n`` to the next
batch's call is truncated backpropagation through time (torch's ``detach``).
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..backend import is_array, namespace_of, numpy_dtype
from ..context import Context
from ..node import Node
from ..engine import recurrent as kernels
from ..engine.gradients import add_into
from ..random import as_generator
from .linear import config_size, float_dtype, positive_sizes
from .recurrence import Elman, GRUStep, LSTMStep, Recurrence, check_sizes, recurrent_parameters
from .recurrent_cells import GRUCell, LSTMCell, RecurrentNode, RNNCell
from .regularization import Dropout

__all__ = ["FirstOutput", "GRU", "LSTM", "RNN"]


class _Direction:
    """What one direction of one layer kept from its pass, for the backward one."""

    __slots__ = ("inputs", "steps", "fast")

    def __init__(self, inputs: Any, steps: Any, fast: bool) -> None:
        self.inputs, self.steps, self.fast = inputs, steps, fast


class _SequenceLayer(RecurrentNode):
    """The sequence layers' shared machinery: stacked layers, directions, the mask, dropout between layers."""

    with_lengths = True
    _first_weight = "weight_ih_l0"
    _cell: type = RNNCell

    def __init__(self, recurrence: Recurrence, input_size: int, hidden_size: int, num_layers: int, bias: bool,
                 batch_first: bool, dropout: float, bidirectional: bool, rng: Any, dtype: Any) -> None:
        self.input_size, self.hidden_size = check_sizes(input_size, hidden_size)
        (self.num_layers,) = positive_sizes(num_layers=num_layers)
        for name, flag in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.integer, np.floating)):
            raise TypeError(f"dropout must be a number in [0, 1], got {dropout!r}")
        if not 0 <= dropout <= 1:  # NaN too
            raise ValueError(f"dropout must be a probability in [0, 1], got {dropout}")
        dtype = float_dtype(np.float64 if dtype is None else dtype)
        super().__init__()
        self.recurrence = recurrence
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        self.dropout = float(dropout)
        self.constant_inputs = (1 + recurrence.states,)  # lengths, or the mask
        generator = as_generator(rng)
        for layer in range(self.num_layers):
            size = self.input_size if layer == 0 else self.hidden_size * self.num_directions
            for suffix in self._suffixes(layer):
                params = recurrent_parameters(recurrence.gates, size, self.hidden_size, self.bias, generator, dtype)
                for name, p in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), params):
                    if p is not None:
                        setattr(self, name + suffix, p)  # torch's order and names: weight_ih_l0, ..._reverse
        if self.dropout > 0 and self.num_layers > 1:
            self.rng = generator  # the masks' stream (saved with a checkpoint)
            self._dropout = Dropout(self.dropout, rng=generator)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self, layer: int) -> List[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][:self.num_directions]

    def cell(self, layer: int = 0, direction: int = 0) -> RecurrentNode:
        """The cell of one layer and direction, holding this layer's very Parameters (a step of it, to study)."""
        if not (0 <= layer < self.num_layers and 0 <= direction < self.num_directions):
            raise ValueError(f"{type(self).__name__} has layers 0..{self.num_layers - 1} and directions "
                             f"0..{self.num_directions - 1}, got layer {layer}, direction {direction}")
        size = self.input_size if layer == 0 else self.hidden_size * self.num_directions
        cell = self._make_cell(size)
        suffix = self._suffixes(layer)[direction]
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if self.bias or name.startswith("weight"):
                setattr(cell, name, getattr(self, name + suffix))
        return cell

    def config(self) -> Dict[str, Any]:
        extra = {"nonlinearity": self.nonlinearity} if isinstance(self.recurrence, Elman) else {}
        return self._config_of("input_size", "hidden_size", "num_layers", **extra, bias=self.bias,
                               batch_first=self.batch_first, dropout=self.dropout, bidirectional=self.bidirectional,
                               dtype=self._numpy_dtype())

    @classmethod
    def config_elements(cls, config: Dict[str, Any]) -> int:
        """The weights' elements from an unchecked config: at most ``L D G H (I + D H + H + 2)`` for ``L`` layers,
        ``D`` directions and ``G`` gates."""
        hidden, layers = config_size(config, "hidden_size"), config_size(config, "num_layers")
        directions = 2 if config.get("bidirectional") is True else 1
        return layers * directions * cls._cell._gates * hidden * (
            config_size(config, "input_size") + directions * hidden + hidden + 2)

    def _numpy_dtype(self) -> np.dtype:
        return numpy_dtype(self.weight_ih_l0.value)

    def _make_cell(self, size: int) -> RecurrentNode:
        return self._cell(size, self.hidden_size, self.bias, dtype=self._numpy_dtype())

    # ---------------------------------------------------------------- inputs
    def _check_x(self, x: Any) -> None:
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            layout = "(N, T, {0})" if self.batch_first else "(T, N, {0})"
            raise ValueError(f"{type(self).__name__} expects x of shape {layout.format(self.input_size)} or "
                             f"(T, {self.input_size}) (one sequence), got {tuple(x.shape)}")
        if x.shape[1 if self.batch_first and x.ndim == 3 else 0] == 0:
            raise ValueError(f"{type(self).__name__}: the sequence must have at least one time step, got x of shape "
                             f"{tuple(x.shape)}")

    def _batch(self, x: Any) -> Tuple[int, ...]:
        return () if x.ndim == 2 else (x.shape[0 if self.batch_first else 1],)

    def _state_shape(self, x: Any, index: int) -> Tuple[int, ...]:
        return (self.num_layers * self.num_directions,) + self._batch(x) + (self.hidden_size,)

    def _constant(self, value: Any, x: Any) -> Any:
        """The lengths ``(N,)`` or the mask (``x``'s time and batch axes), checked."""
        value = value if is_array(value) else np.asarray(value)
        xp = namespace_of(value)
        steps = x.shape[1 if self.batch_first and x.ndim == 3 else 0]
        if xp.isdtype(value.dtype, "bool"):
            if tuple(value.shape) != tuple(x.shape[:-1]):
                raise ValueError(f"{type(self).__name__}: a mask must have x's time and batch axes, shape "
                                 f"{tuple(x.shape[:-1])}, got {tuple(value.shape)}")
            return value
        if not xp.isdtype(value.dtype, "integral"):
            raise TypeError(f"{type(self).__name__}: lengths must hold integers (or give a boolean mask), got dtype "
                            f"{value.dtype}")
        if tuple(value.shape) != self._batch(x):
            raise ValueError(f"{type(self).__name__}: lengths must have shape {self._batch(x)} (one per sequence), "
                             f"got {tuple(value.shape)}")
        if value.size and not bool(xp.all((value >= 0) & (value <= steps))):
            raise ValueError(f"{type(self).__name__}: lengths must lie in [0, {steps}] (the time steps of x)")
        return value

    def _time_mask(self, xp: ModuleType, value: Any, steps: int, batch: int) -> Any:
        """The constant input as a boolean ``(T, N, 1)``, true where a step counts."""
        if xp.isdtype(value.dtype, "bool"):
            mask = value if value.ndim == 1 or not self.batch_first else xp.permute_dims(value, (1, 0))
        else:
            lengths = xp.reshape(xp.astype(value, xp.int64), (1, batch))
            mask = xp.reshape(xp.arange(steps, dtype=xp.int64), (steps, 1)) < lengths
        return xp.reshape(mask, (steps, batch, 1))

    # ---------------------------------------------------------------- forward
    def _forward(self, *args: Any) -> Any:
        *xs, ctx = args
        xp, x = ctx.xp, xs[0]
        X = self._cast(xp, x)
        X = xp.reshape(X, (X.shape[0], 1, X.shape[1])) if x.ndim == 2 else X
        X = xp.permute_dims(X, (1, 0, 2)) if self.batch_first and x.ndim == 3 else X  # time-major inside
        steps, batch = X.shape[0], X.shape[1]
        count = self.num_layers * self.num_directions
        states0 = [xp.reshape(self._cast(xp, s), (count, batch, self.hidden_size)) for s in
                   xs[1:1 + self.recurrence.states]]
        states0 += [xp.zeros((count, batch, self.hidden_size), dtype=self.dtype)
                    for _ in range(self.recurrence.states - len(states0))]
        given = xs[1 + self.recurrence.states:]
        ctx.mask = mask = self._time_mask(xp, given[0], steps, batch) if given else None
        ctx.directions, ctx.dropouts, finals = [], [], []
        layer_input = X
        for layer in range(self.num_layers):
            flat = xp.reshape(layer_input, (steps * batch, layer_input.shape[-1]))
            outputs = []
            for d, suffix in enumerate(self._suffixes(layer)):
                w_ih, w_hh, b_ih, b_hh = self._parameter_values(suffix)
                a_x = flat @ w_ih.T  # a^x for every step at once
                if b_ih is not None:
                    a_x += b_ih
                a_x = xp.reshape(a_x, (steps, batch, w_ih.shape[0]))
                start = tuple(s[layer * self.num_directions + d, ...] for s in states0)
                y, final, saved = self._run(ctx, a_x, start, w_hh, b_hh, mask, reverse=d == 1)
                ctx.directions.append(_Direction(flat, saved, ctx.fast))
                outputs.append(y)
                finals.append(final)
            layer_input = outputs[0] if len(outputs) == 1 else xp.concat(outputs, axis=-1)
            if layer < self.num_layers - 1 and self.training and self.dropout > 0:
                step = self._dropout.run(layer_input, update_state=ctx.update_state)
                ctx.dropouts.append(step)
                layer_input = step.y
        return self._outputs(xp, x, layer_input, finals)

    def _run(self, ctx: Context, a_x: Any, start: Tuple[Any, ...], w_hh: Any, b_hh: Any, mask: Any,
             reverse: bool) -> Tuple[Any, Tuple[Any, ...], Any]:
        """One direction over the sequence: outputs ``(T, N, H)``, the final state, what its backward needs."""
        if ctx.fast:
            return kernels.run(self.recurrence.name, a_x, start, w_hh, b_hh, mask, reverse)
        xp, steps = ctx.xp, a_x.shape[0]
        state, ys, saved = start, [None] * steps, []
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            new, kept = self.recurrence.step(xp, a_x[t, ...], state, w_hh, b_hh)
            if mask is not None:  # a step that does not count carries the state and outputs zero
                new = tuple(xp.where(mask[t, ...], s, old) for s, old in zip(new, state))
            ys[t] = new[0] if mask is None else xp.where(mask[t, ...], new[0], xp.zeros_like(new[0]))
            saved.append((t, state, kept))
            state = new
        return xp.stack(ys, axis=0), state, saved

    def _outputs(self, xp: ModuleType, x: Any, output: Any, finals: List[Tuple[Any, ...]]) -> Tuple[Any, ...]:
        """``(output, h_n[, c_n])`` in the input's layout."""
        if x.ndim == 2:
            output = xp.reshape(output, (output.shape[0], output.shape[2]))
        elif self.batch_first:
            output = xp.permute_dims(output, (1, 0, 2))
        count = self.num_layers * self.num_directions
        shape = (count,) + tuple(x.shape[:-2] if x.ndim == 2 else (x.shape[0 if self.batch_first else 1],)) + (
            self.hidden_size,)
        states = [xp.reshape(xp.stack([f[k] for f in finals], axis=0), shape) for k in range(self.recurrence.states)]
        return (output, *states)

    # ---------------------------------------------------------------- backward through time
    def _gradients(self, g: Tuple[Any, ...], ctx: Context, flags: Tuple[bool, ...], parameters: bool) -> Any:
        xp, x = ctx.xp, ctx.x
        g_out = self._cast(xp, g[0])
        g_out = xp.reshape(g_out, (g_out.shape[0], 1, g_out.shape[1])) if x.ndim == 2 else g_out
        g_out = xp.permute_dims(g_out, (1, 0, 2)) if self.batch_first and x.ndim == 3 else g_out
        steps, batch = g_out.shape[0], g_out.shape[1]
        count, size = self.num_layers * self.num_directions, self.hidden_size
        g_states = [xp.reshape(self._cast(xp, part), (count, batch, size)) for part in g[1:]]
        d_start: List[List[Any]] = [[None] * count for _ in g_states]
        upstream = g_out
        for layer in range(self.num_layers - 1, -1, -1):
            if layer < self.num_layers - 1 and ctx.dropouts:
                upstream = self._dropout.vjp_from(ctx.dropouts[layer], upstream)
            need_input = layer > 0 or flags[0]
            d_input = None
            for d, suffix in enumerate(self._suffixes(layer)):
                k = layer * self.num_directions + d
                w_ih, w_hh, _, _ = self._parameter_values(suffix)
                direction = ctx.directions[k]
                gy = upstream[..., d * size:(d + 1) * size] if self.bidirectional else upstream
                d_final = tuple(s[k, ...] for s in g_states)
                d_ax, d_ah, h_prev, d0 = self._run_back(ctx, direction, gy, d_final, w_hh, ctx.mask)
                for part, value in zip(d_start, d0):
                    part[k] = value
                flat_ax = xp.reshape(d_ax, (steps * batch, d_ax.shape[-1]))
                if parameters:
                    self._accumulate(ctx, suffix, flat_ax, xp.reshape(d_ah, (steps * batch, d_ah.shape[-1])),
                                     direction.inputs, xp.reshape(h_prev, (steps * batch, size)))
                if need_input:
                    part = flat_ax @ w_ih  # dL/dx_t = (dL/da^x_t) W_ih, every step at once
                    d_input = part if d_input is None else d_input + part
            upstream = None if d_input is None else xp.reshape(d_input, (steps, batch, d_input.shape[-1]))
        grads: List[Optional[Any]] = [None] * len(ctx.inputs)
        if flags[0]:
            dx = xp.permute_dims(upstream, (1, 0, 2)) if self.batch_first and x.ndim == 3 else upstream
            grads[0] = dx
        for i in range(1, min(len(ctx.inputs), 1 + self.recurrence.states)):
            if flags[i]:
                grads[i] = xp.stack(d_start[i - 1], axis=0)
        out = [None if d is None else xp.astype(xp.reshape(d, tuple(v.shape)), v.dtype, copy=False)
               for d, v in zip(grads, ctx.inputs)]
        return out[0] if len(out) == 1 else tuple(out)

    def _run_back(self, ctx: Context, direction: _Direction, gy: Any, d_final: Tuple[Any, ...], w_hh: Any,
                  mask: Any) -> Tuple[Any, Any, Any, Tuple[Any, ...]]:
        """One direction backward through time: ``dL/da^x``, ``dL/da^h``, ``h_{t-1}`` ``(T, N, ·)`` in time order,
        and the initial state's gradient."""
        if direction.fast:
            return kernels.run_back(self.recurrence.name, direction.steps, gy, d_final, w_hh, mask)
        xp, steps = ctx.xp, gy.shape[0]
        d = d_final
        d_ax, d_ah, h_prev = [None] * steps, [None] * steps, [None] * steps
        for t, before, kept in reversed(direction.steps):
            m = None if mask is None else mask[t, ...]
            current = (d[0] + (gy[t, ...] if m is None else xp.where(m, gy[t, ...], xp.zeros_like(d[0]))),) + d[1:]
            ax, ah, direct = self.recurrence.step_back(xp, current, kept)
            back = ah @ w_hh  # the old h's gradient through W_hh
            previous = tuple(back if i == 0 and part is None else (back + part if i == 0 else part)
                             for i, part in enumerate(direct))
            if m is not None:  # a step that does not count: no gate gradient, the state's gradient carried
                zero = xp.zeros_like(ax)
                ax, ah = xp.where(m, ax, zero), xp.where(m, ah, xp.zeros_like(ah))
                previous = tuple(xp.where(m, p, c) for p, c in zip(previous, current))
            d_ax[t], d_ah[t], h_prev[t], d = ax, ah, before[0], previous
        return xp.stack(d_ax, axis=0), xp.stack(d_ah, axis=0), xp.stack(h_prev, axis=0), d

    def _accumulate(self, ctx: Context, suffix: str, d_ax: Any, d_ah: Any, inputs: Any, h_prev: Any) -> None:
        """The parameter gradients of one direction, each a sum over time and batch in one product."""
        xp = ctx.xp
        w_ih, w_hh = getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix)
        if ctx.fast:  # the same products, written straight into .grad after zero_grad
            add_into(w_ih, np.matmul, d_ax.T, inputs)
            add_into(w_hh, np.matmul, d_ah.T, h_prev)
            if self.bias:
                add_into(getattr(self, "bias_ih" + suffix), np.sum, d_ax, axis=0)
                add_into(getattr(self, "bias_hh" + suffix), np.sum, d_ah, axis=0)
            return
        w_ih.accumulate(d_ax.T @ inputs)  # Σ_t (dL/da^x_t)ᵀ x_t
        w_hh.accumulate(d_ah.T @ h_prev)  # Σ_t (dL/da^h_t)ᵀ h_{t-1}
        if self.bias:
            getattr(self, "bias_ih" + suffix).accumulate(xp.sum(d_ax, axis=0))
            getattr(self, "bias_hh" + suffix).accumulate(xp.sum(d_ah, axis=0))

    def extra_repr(self) -> str:
        parts = [str(self.input_size), str(self.hidden_size)]
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                parts.append(f"{name}={getattr(self, name)}")
        return ", ".join(parts)


class RNN(_SequenceLayer):
    r"""An Elman network over sequences, torch's ``RNN``: at each step :math:`h_t = \phi(x_t W_{ih}^\top + b_{ih}
    + h_{t-1} W_{hh}^\top + b_{hh})`, :math:`\phi` = ``nonlinearity`` (``'tanh'`` or ``'relu'``).

    Torch's arguments, in its order: ``input_size``, ``hidden_size``,
    ``num_layers=1``, ``nonlinearity='tanh'``, ``bias=True``,
    ``batch_first=False``, ``dropout=0.0`` (between layers, in training),
    ``bidirectional=False``; and ``rng`` (the initial weights, :math:`U(-1/\sqrt H,
    1/\sqrt H)` as torch draws them, and the dropout masks), ``dtype``
    (float64 unless given; inputs are cast to it).  Parameters per layer
    ``k`` and direction: ``weight_ih_l{k}`` ``(H, I_k)``, ``weight_hh_l{k}``
    ``(H, H)``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` ``(H,)``, ``..._reverse``
    for the second direction: torch's names and layouts, so a state dict
    moves between the two unchanged.  The step's derivative is
    :class:`~nn_from_scratch.nodes.recurrence.Elman`'s; inputs, outputs and
    backpropagation through time as the module says.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *,
                 rng: Any = None, dtype: Any = None) -> None:
        super().__init__(Elman(nonlinearity), input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, rng, dtype)
        self.nonlinearity = nonlinearity

    def _make_cell(self, size: int) -> RecurrentNode:
        return RNNCell(size, self.hidden_size, self.bias, self.nonlinearity, dtype=self._numpy_dtype())

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.nonlinearity == "tanh" else f", nonlinearity={self.nonlinearity!r}")


class LSTM(_SequenceLayer):
    r"""A long short-term memory network over sequences, torch's ``LSTM``: at each step the
    :class:`~nn_from_scratch.nodes.recurrence.LSTMStep`,

    .. math::
        c_t = f_t \odot c_{t-1} + i_t \odot g_t, \qquad h_t = o_t \odot \tanh c_t,

    gates ``i, f, g, o`` (torch's order) from :math:`x_t W_{ih}^\top + b_{ih} + h_{t-1} W_{hh}^\top + b_{hh}`.
    Torch's arguments and order: ``input_size``, ``hidden_size``,
    ``num_layers=1``, ``bias=True``, ``batch_first=False``, ``dropout=0.0``,
    ``bidirectional=False``, ``proj_size=0`` (projections are not
    implemented: only 0 is taken); ``rng``, ``dtype`` as :class:`RNN`.
    Weights ``(4H, ·)``, torch's names.  ``lstm(x)``, ``lstm(x, (h0, c0))``
    or ``lstm(x, h0, c0, lengths)``; the outputs are ``(output, h_n, c_n)``.
    """

    _cell = LSTMCell

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 *, rng: Any = None, dtype: Any = None) -> None:
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) or proj_size != 0:
            raise ValueError(f"LSTM: proj_size={proj_size!r} is not implemented here (only 0, torch's default)")
        super().__init__(LSTMStep(), input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, rng, dtype)
        self.proj_size = 0


class GRU(_SequenceLayer):
    r"""A gated recurrent unit network over sequences, torch's ``GRU``: at each step the
    :class:`~nn_from_scratch.nodes.recurrence.GRUStep`,

    .. math::
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}, \qquad
        n_t = \tanh\big(a^x_{n} + r_t \odot (h_{t-1} W_{hn}^\top + b_{hn})\big),

    gates ``r, z, n`` in torch's order.  Torch's arguments and order:
    ``input_size``, ``hidden_size``, ``num_layers=1``, ``bias=True``,
    ``batch_first=False``, ``dropout=0.0``, ``bidirectional=False``;
    ``rng``, ``dtype`` as :class:`RNN`.  Weights ``(3H, ·)``, torch's names.
    """

    _cell = GRUCell

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *, rng: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(GRUStep(), input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         rng, dtype)


class FirstOutput(Node):
    r"""The first of its ``num_inputs`` inputs: in a Sequential, a recurrent layer's output sequence.

    A layer of several outputs (an :class:`LSTM`'s ``output, h_n, c_n``)
    hands them all to the next layer of a Sequential; this node keeps
    ``output`` and drops the final states, as ``output, _ = rnn(x)`` does in
    torch.  :math:`y = x_0`, so :math:`\partial L/\partial x_0 = g` and the
    dropped inputs get no gradient (None: they did not reach the loss).
    """

    def __init__(self, num_inputs: int) -> None:
        if isinstance(num_inputs, bool) or not isinstance(num_inputs, (int, np.integer)) or num_inputs < 1:
            raise ValueError(f"FirstOutput: num_inputs must be a positive integer, got {num_inputs!r}")
        super().__init__()
        self.num_inputs = int(num_inputs)

    def config(self) -> Dict[str, Any]:
        return self._config_of("num_inputs")

    def _forward(self, *args: Any) -> Any:
        return args[0]

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return g if self.num_inputs == 1 else (g,) + (None,) * (self.num_inputs - 1)

    def extra_repr(self) -> str:
        return f"num_inputs={self.num_inputs}"
