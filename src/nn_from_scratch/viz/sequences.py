r"""Backpropagation through time made visible: the step Jacobians of a recurrent layer and their products.

A recurrent layer's state :math:`s_t` (:math:`h_t`, or :math:`(h_t, c_t)`
for the LSTM) is a function of the one before, :math:`s_t = F(x_t,
s_{t-1})`.  The gradient that reaches step :math:`t` from the last one is a
product of the steps' Jacobians :math:`J_k = \partial s_k/\partial s_{k-1}`,

.. math::
    \frac{\partial s_T}{\partial s_t} = J_T\, J_{T-1} \cdots J_{t+1},

and its size over :math:`T - t` is the vanishing (or exploding) gradient the
textbooks describe: the product's singular values shrink (or grow)
geometrically when the :math:`J_k` do.  :func:`bptt_jacobians` computes the
:math:`J_k` explicitly along one sequence, with the layer's own backward pass
(a step's vector-Jacobian products for the :math:`S` rows of the identity,
as one batch of :math:`S` copies of the step, ``vjp_from``, which leaves the
parameters' gradients alone), then the products,
:math:`\lVert \partial h_T/\partial h_t \rVert_2` (the largest singular value
of the product's :math:`h` block) and every singular value of
:math:`\partial s_T/\partial s_t`.  :func:`plot_bptt` draws them against
:math:`t` for several layers on the same sequence.

Computing needs only NumPy; drawing needs matplotlib.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..node import Node
from .figures import figure_class

__all__ = ["BPTTJacobians", "bptt_jacobians", "plot_bptt"]


@dataclass
class BPTTJacobians:
    r"""The Jacobians of one direction of a recurrent layer along one sequence of :math:`T` steps.

    ``states`` ``(T + 1, S)``: :math:`s_0 \dots s_T` (:math:`S = H`, or :math:`2H`
    for the LSTM, :math:`h` then :math:`c`); ``steps`` ``(T, S, S)``:
    ``steps[k]`` :math:`= J_{k+1} = \partial s_{k+1}/\partial s_k`;
    ``products`` ``(T + 1, S, S)``: ``products[t]`` :math:`= \partial s_T/\partial s_t`
    (``products[T]`` the identity); ``norms`` ``(T + 1,)``:
    :math:`\lVert \partial h_T/\partial h_t \rVert_2`; ``singular_values``
    ``(T + 1, S)``: those of ``products[t]``, largest first.
    """

    states: np.ndarray
    steps: np.ndarray
    products: np.ndarray
    norms: np.ndarray
    singular_values: np.ndarray
    hidden_size: int


def _cell(layer: Node) -> Node:
    """The one-step node of ``layer``: a sequence layer's first cell (layer 0, forward direction), or a cell."""
    if hasattr(layer, "cell") and callable(layer.cell):
        return layer.cell(0, 0)
    if hasattr(layer, "recurrence") and hasattr(layer, "hidden_size"):
        return layer
    raise TypeError(f"bptt_jacobians needs a recurrent layer or cell (RNN, LSTM, GRU or their cells), got "
                    f"{type(layer).__name__}")


def bptt_jacobians(layer: Node, x: Any, state: Optional[Sequence[Any]] = None) -> BPTTJacobians:
    r"""The step Jacobians :math:`\partial s_t/\partial s_{t-1}` of ``layer`` along the sequence ``x`` and their products.

    ``layer`` is an ``RNN``, ``LSTM`` or ``GRU`` (its first layer, forward
    direction: a deeper layer's input is the one below's output) or a cell;
    ``x`` one sequence ``(T, input_size)``; ``state`` the initial state
    (``(h0,)`` or ``(h0, c0)``, each ``(hidden_size,)``; zeros when None).
    The parameters' gradients are left as they were (vector-Jacobian products, not a backward pass).
    """
    cell = _cell(layer)
    size, count = int(cell.hidden_size), int(cell.recurrence.states)
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != cell.input_size or x.shape[0] == 0:
        raise ValueError(f"bptt_jacobians expects one sequence x of shape (T, {cell.input_size}) with T >= 1, "
                         f"got {x.shape}")
    dtype = np.dtype(cell.dtype)
    if state is None:
        current = [np.zeros(size, dtype) for _ in range(count)]
    else:
        current = [np.asarray(s, dtype) for s in state]
        if len(current) != count or any(s.shape != (size,) for s in current):
            raise ValueError(f"bptt_jacobians: the initial state must be {count} array(s) of shape ({size},)")
    width = size * count
    identity = np.eye(width, dtype=dtype)
    seeds = tuple(identity[:, k * size:(k + 1) * size] for k in range(count))  # row i: the i-th unit vector
    steps, states = [], [np.concatenate(current)]
    for x_t in x:
        ctx = cell.run(np.repeat(x_t[None, :].astype(dtype), width, axis=0),
                       *(np.repeat(s[None, :], width, axis=0) for s in current), update_state=False)
        grads = cell.vjp_from(ctx, seeds if count > 1 else seeds[0])
        steps.append(np.concatenate(grads[1:], axis=1))  # row i: ∂s'_i/∂s
        new = ctx.y if isinstance(ctx.y, tuple) else (ctx.y,)
        current = [np.asarray(s[0]) for s in new]
        states.append(np.concatenate(current))
    jacobians = np.stack(steps)
    products = np.empty((len(steps) + 1, width, width), dtype)
    products[-1] = identity
    for t in range(len(steps) - 1, -1, -1):  # ∂s_T/∂s_t = ∂s_T/∂s_{t+1} J_{t+1}
        products[t] = products[t + 1] @ jacobians[t]
    norms = np.linalg.norm(products[:, :size, :size], ord=2, axis=(1, 2))
    singular = np.linalg.svd(products, compute_uv=False)
    return BPTTJacobians(np.stack(states), jacobians, products, norms, singular, size)


def plot_bptt(analyses: Mapping[str, BPTTJacobians], *, title: Optional[str] = None) -> Any:
    r"""Two panels against the step :math:`t`, one curve per layer: :math:`\lVert \partial h_T/\partial h_t \rVert_2`
    (left), and the largest and smallest singular values of :math:`\partial s_T/\partial s_t` with the band between
    them (right), both on a log axis (zeros, which a log axis cannot show, are left out, and so are smallest singular
    values below the SVD's rounding, :math:`\epsilon\, S\, \sigma_{\max}`).

    ``analyses`` maps a label (``"LSTM"``) to :func:`bptt_jacobians`' result; returns the Figure.
    """
    Figure = figure_class("plot_bptt")
    if not analyses:
        raise ValueError("plot_bptt needs at least one analysis")
    for name, a in analyses.items():
        if not isinstance(a, BPTTJacobians):
            raise TypeError(f"plot_bptt: {name!r} must be a BPTTJacobians (from bptt_jacobians), got "
                            f"{type(a).__name__}")
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    for (name, a), color in zip(analyses.items(), _colors(len(analyses))):
        t = np.arange(a.norms.shape[0])
        left.plot(t, _positive(a.norms), marker=".", color=color, label=name)
        values = a.singular_values
        top = _positive(values[:, 0])
        # below eps·σ_max·S a singular value is the SVD's rounding, not the product's: left out
        floor = np.finfo(values.dtype).eps * values.shape[1] * values[:, 0]
        bottom = _positive(np.where(values[:, -1] > floor, values[:, -1], 0.0))
        right.plot(t, top, color=color, label=name)
        right.plot(t, bottom, color=color, linestyle="--")
        right.fill_between(t, np.where(np.isnan(bottom), floor, bottom), top, color=color, alpha=0.1)
    for axis, label in ((left, r"$\|\partial h_T / \partial h_t\|_2$"),
                        (right, r"singular values of $\partial s_T / \partial s_t$")):
        axis.set_yscale("log")
        axis.set_xlabel("step t")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize="small")
    right.set_title("solid: the largest, dashed: the smallest", fontsize="small")
    fig.suptitle(title or "Backpropagation through time: the gradient that reaches step t from the last step")
    return fig


def _positive(values: np.ndarray) -> np.ndarray:
    """The values, NaN where not positive (a log axis leaves them out)."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(values > 0, values, np.nan)


def _colors(count: int) -> Sequence[str]:
    base = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    return [base[i % len(base)] for i in range(count)]
