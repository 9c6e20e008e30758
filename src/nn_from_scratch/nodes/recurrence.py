r"""One step of a recurrent layer, written once for the cells and the sequence layers: Elman, LSTM and GRU.

A recurrent layer maps an input :math:`x_t` and its state :math:`s_{t-1}`
(:math:`h`, or :math:`(h, c)` for the LSTM) to the next state :math:`s_t`.
Its weights are torch's: ``weight_ih`` ``(G·H, I)``, ``weight_hh``
``(G·H, H)``, ``bias_ih`` and ``bias_hh`` ``(G·H,)`` for :math:`G` gate
blocks of :math:`H` = ``hidden_size`` rows each, in torch's order.  A step
is written in two pre-activations,

.. math::
    a^x = x W_{ih}^\top + b_{ih}, \qquad a^h = h W_{hh}^\top + b_{hh},

so that a sequence layer computes :math:`a^x` for every time step in one
matrix product and a step is only the recurrent product and the gates.
:meth:`Recurrence.step` takes :math:`a^x` and the old state and returns the
new one; :meth:`Recurrence.step_back` takes the gradient of the new state and
returns :math:`\partial L/\partial a^x`, :math:`\partial L/\partial a^h` (the
two differ only for the GRU) and the part of the old state's gradient that
does not go through :math:`W_{hh}`; the caller adds
:math:`(\partial L/\partial a^h)\, W_{hh}` to :math:`\partial L/\partial h`
and sums the parameter gradients
:math:`\partial L/\partial W_{hh} = \sum_t (\partial L/\partial a^h_t)^\top h_{t-1}`,
:math:`\partial L/\partial W_{ih} = \sum_t (\partial L/\partial a^x_t)^\top x_t`
and the biases' :math:`\sum` over batch and time.  Every formula is in the
input's namespace ``xp`` (the array API standard); rows are independent, so
a batch is one array.
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Optional, Tuple

import numpy as np

from ..parameter import Parameter
from .linear import positive_sizes

__all__ = ["ELMAN_NONLINEARITIES", "Elman", "GRUStep", "LSTMStep", "Recurrence", "recurrent_parameters", "sigmoid"]

States = Tuple[Any, ...]
ELMAN_NONLINEARITIES = ("tanh", "relu")


def sigmoid(xp: ModuleType, a: Any) -> Any:
    r""":math:`\sigma(a) = 1/(1 + e^{-a})`, as torch writes it: :math:`e^{-a} = \infty` gives the limit 0."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + xp.exp(-a))


def recurrent_parameters(gates: int, input_size: int, hidden_size: int, bias: bool, rng: np.random.Generator,
                         dtype: np.dtype) -> Tuple[Parameter, Parameter, Optional[Parameter], Optional[Parameter]]:
    r"""``weight_ih, weight_hh, bias_ih, bias_hh`` as torch draws them: each :math:`U(-k, k)`, :math:`k = 1/\sqrt H`.

    The biases are None without ``bias``.
    """
    k = 1.0 / math.sqrt(hidden_size)
    rows = gates * hidden_size

    def draw(*shape: int) -> Parameter:
        return Parameter(rng.uniform(-k, k, size=shape).astype(dtype))

    weight_ih, weight_hh = draw(rows, input_size), draw(rows, hidden_size)
    if not bias:
        return weight_ih, weight_hh, None, None
    return weight_ih, weight_hh, draw(rows), draw(rows)


def recurrent_product(xp: ModuleType, h: Any, weight_hh: Any, bias_hh: Any) -> Any:
    r""":math:`a^h = h W_{hh}^\top + b_{hh}`."""
    a = h @ weight_hh.T
    if bias_hh is not None:
        a += bias_hh
    return a


class Recurrence:
    """The math of one step of one kind of recurrent layer (see the module docstring)."""

    name = ""
    gates = 1  # blocks of hidden_size rows in the weights
    states = 1  # 1: the state is h; 2: (h, c)

    def step(self, xp: ModuleType, a_x: Any, state: States, weight_hh: Any, bias_hh: Any) -> Tuple[States, Any]:
        """The new state from :math:`a^x` ``(N, G·H)`` and the old state, and what :meth:`step_back` needs."""
        raise NotImplementedError

    def step_back(self, xp: ModuleType, d_state: States, saved: Any) -> Tuple[Any, Any, States]:
        r"""``(dL/da^x, dL/da^h, direct)`` from the new state's gradient; ``direct`` is the old state's gradient
        but the :math:`(\partial L/\partial a^h) W_{hh}` term (None for a zero part)."""
        raise NotImplementedError


class Elman(Recurrence):
    r"""The Elman step, torch's ``RNN``: :math:`h' = \phi(a^x + a^h)`, :math:`\phi` = tanh or ReLU.

    .. math::
        \frac{\partial L}{\partial a} = \frac{\partial L}{\partial h'} \odot \phi'(a), \qquad
        \tanh'(a) = 1 - h'^2, \qquad \operatorname{relu}'(a) = [h' > 0],

    and :math:`\partial L/\partial a^x = \partial L/\partial a^h = \partial L/\partial a`, the old state's
    gradient all through :math:`W_{hh}`.  The ReLU passes the gradient where :math:`h'` is not :math:`\le 0`
    (torch's rule, NaN included).
    """

    def __init__(self, nonlinearity: str = "tanh") -> None:
        if nonlinearity not in ELMAN_NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {ELMAN_NONLINEARITIES}, got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.name = f"RNN_{nonlinearity.upper()}"

    def step(self, xp: ModuleType, a_x: Any, state: States, weight_hh: Any, bias_hh: Any) -> Tuple[States, Any]:
        a = a_x + recurrent_product(xp, state[0], weight_hh, bias_hh)
        h = xp.tanh(a) if self.nonlinearity == "tanh" else xp.maximum(a, 0.0)
        return (h,), h

    def step_back(self, xp: ModuleType, d_state: States, saved: Any) -> Tuple[Any, Any, States]:
        dh, h = d_state[0], saved
        if self.nonlinearity == "tanh":
            da = dh * (1.0 - h * h)
        else:
            da = xp.where(h <= 0, xp.zeros_like(dh), dh)  # a selection: an infinite dh where h <= 0 gives 0
        return da, da, (None,)


class LSTMStep(Recurrence):
    r"""The LSTM step, torch's gates ``i, f, g, o`` in that order, :math:`a = a^x + a^h` ``(N, 4H)``:

    .. math::
        i = \sigma(a_i), \quad f = \sigma(a_f), \quad g = \tanh(a_g), \quad o = \sigma(a_o), \qquad
        c' = f \odot c + i \odot g, \qquad h' = o \odot \tanh c'.

    Backward, with :math:`\bar c = \partial L/\partial c' + \partial L/\partial h' \odot o \odot (1 - \tanh^2 c')`:

    .. math::
        \frac{\partial L}{\partial a} = \big[\bar c \odot g \odot i(1-i),\;
            \bar c \odot c \odot f(1-f),\; \bar c \odot i \odot (1-g^2),\;
            \partial_{h'} L \odot \tanh c' \odot o(1-o)\big], \qquad
        \frac{\partial L}{\partial c} = \bar c \odot f,

    and :math:`\partial L/\partial h` all through :math:`W_{hh}`.
    """

    name, gates, states = "LSTM", 4, 2

    def step(self, xp: ModuleType, a_x: Any, state: States, weight_hh: Any, bias_hh: Any) -> Tuple[States, Any]:
        h, c = state
        n = h.shape[-1]
        a = a_x + recurrent_product(xp, h, weight_hh, bias_hh)
        i, f = sigmoid(xp, a[:, :n]), sigmoid(xp, a[:, n:2 * n])
        g, o = xp.tanh(a[:, 2 * n:3 * n]), sigmoid(xp, a[:, 3 * n:])
        c_new = f * c + i * g
        tanh_c = xp.tanh(c_new)
        return (o * tanh_c, c_new), (i, f, g, o, c, tanh_c)

    def step_back(self, xp: ModuleType, d_state: States, saved: Any) -> Tuple[Any, Any, States]:
        dh, dc = d_state
        i, f, g, o, c, tanh_c = saved
        dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
        da = xp.concat([dc * g * i * (1.0 - i), dc * c * f * (1.0 - f), dc * i * (1.0 - g * g),
                        dh * tanh_c * o * (1.0 - o)], axis=-1)
        return da, da, (None, dc * f)


class GRUStep(Recurrence):
    r"""The GRU step, torch's gates ``r, z, n`` in that order; :math:`a^x`, :math:`a^h` ``(N, 3H)``:

    .. math::
        r = \sigma(a^x_r + a^h_r), \quad z = \sigma(a^x_z + a^h_z), \quad n = \tanh(a^x_n + r \odot a^h_n),
        \qquad h' = (1 - z) \odot n + z \odot h

    (computed as torch does, :math:`h' = n + z \odot (h - n)`).  Backward, with
    :math:`\bar n = \partial_{h'} L \odot (1 - z) \odot (1 - n^2)`:

    .. math::
        \frac{\partial L}{\partial a^x} = \big[\bar r,\; \partial_{h'} L \odot (h - n) \odot z(1-z),\;
            \bar n\big], \quad \bar r = \bar n \odot a^h_n \odot r(1-r), \qquad
        \frac{\partial L}{\partial a^h} = \big[\bar r,\; \cdot,\; \bar n \odot r\big],

    and the old state's gradient :math:`\partial_{h'} L \odot z` besides the :math:`W_{hh}` term.
    """

    name, gates, states = "GRU", 3, 1

    def step(self, xp: ModuleType, a_x: Any, state: States, weight_hh: Any, bias_hh: Any) -> Tuple[States, Any]:
        h = state[0]
        n = h.shape[-1]
        a_h = recurrent_product(xp, h, weight_hh, bias_hh)
        r = sigmoid(xp, a_x[:, :n] + a_h[:, :n])
        z = sigmoid(xp, a_x[:, n:2 * n] + a_h[:, n:2 * n])
        a_hn = a_h[:, 2 * n:]
        new = xp.tanh(a_x[:, 2 * n:] + r * a_hn)
        return (new + z * (h - new),), (r, z, new, a_hn, h)

    def step_back(self, xp: ModuleType, d_state: States, saved: Any) -> Tuple[Any, Any, States]:
        dh = d_state[0]
        r, z, new, a_hn, h = saved
        dn = dh * (1.0 - z) * (1.0 - new * new)
        dr = dn * a_hn * r * (1.0 - r)
        dz = dh * (h - new) * z * (1.0 - z)
        return xp.concat([dr, dz, dn], axis=-1), xp.concat([dr, dz, dn * r], axis=-1), (dh * z,)


def check_sizes(input_size: Any, hidden_size: Any) -> Tuple[int, int]:
    """``input_size`` and ``hidden_size`` as positive ints (``ValueError`` naming the bad one)."""
    return positive_sizes(input_size=input_size, hidden_size=hidden_size)
