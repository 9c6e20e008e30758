r"""Scaled dot-product attention, as ``torch.nn.functional.scaled_dot_product_attention``: the node and the function.

On one batch entry, with queries :math:`Q` ``(L, E)``, keys :math:`K` ``(S, E)``,
values :math:`V` ``(S, E_v)``, the scale :math:`s` (``1/\sqrt{E}`` unless
given) and an additive mask :math:`M` ``(L, S)`` (0 where a query may look,
:math:`-\infty` where it may not):

.. math::
    A = s\,Q K^\top + M, \qquad P = \operatorname{softmax}_{\text{rows}}(A), \qquad
    \tilde P = P \odot D / (1 - p), \qquad O = \tilde P V,

:math:`D` the dropout mask (keep with probability :math:`1-p`).  Its
derivatives, with :math:`G = \partial L/\partial O` and the upstream
gradient of the probabilities :math:`G_P` (MultiheadAttention returns them):

.. math::
    \frac{\partial L}{\partial V} = \tilde P^\top G, \qquad
    \frac{\partial L}{\partial \tilde P} = G V^\top + G_P, \qquad
    \frac{\partial L}{\partial A} = P \odot \Big(\Pi - \textstyle\sum_j \Pi_{\cdot j} P_{\cdot j}\Big),
    \quad \Pi = \frac{\partial L}{\partial \tilde P} \odot \frac{D}{1-p},

.. math::
    \frac{\partial L}{\partial Q} = s\,\frac{\partial L}{\partial A} K, \qquad
    \frac{\partial L}{\partial K} = s\,\Big(\frac{\partial L}{\partial A}\Big)^\top Q.

A row whose every key is masked out has no softmax: :math:`P = 0` there
(torch's scaled_dot_product_attention), or NaN where the caller asks for
torch's plain softmax (``MultiheadAttention`` when it returns its weights).
The helpers below are the textbook path, written in the array API; the
MultiheadAttention layer shares them.
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..backend import is_array, namespace_of
from ..context import Context, as_float_array
from ..node import Node
from ..random import as_generator

__all__ = ["ScaledDotProductAttention", "scaled_dot_product_attention"]


# ------------------------------------------------------------------ the formulas, shared with MultiheadAttention
def mask_as_bias(xp: ModuleType, mask: Optional[Any], dtype: Any, masked_when: bool) -> Optional[Any]:
    """A boolean mask as an additive one (``-inf`` where ``mask == masked_when``), a float mask cast to ``dtype``."""
    if mask is None:
        return None
    if xp.isdtype(mask.dtype, "bool"):
        hidden = mask if masked_when else xp.logical_not(mask)
        return xp.where(hidden, xp.asarray(-math.inf, dtype=dtype), xp.asarray(0.0, dtype=dtype))
    return xp.astype(mask, dtype)


def causal_bias(xp: ModuleType, length: int, source: int, dtype: Any) -> Any:
    """The additive causal mask ``(L, S)``: query ``i`` sees keys ``j <= i`` (torch's top-left ``tril``)."""
    above = xp.arange(source)[None, :] > xp.arange(length)[:, None]
    return xp.where(above, xp.asarray(-math.inf, dtype=dtype), xp.asarray(0.0, dtype=dtype))


def attend(xp: ModuleType, q: Any, k: Any, v: Any, scale: float, bias: Optional[Any], keep: Optional[Any],
           p: float, safe: bool) -> Tuple[Any, Any, Any]:
    r"""``(O, P, P̃)`` for ``q (..., L, E)``, ``k (..., S, E)``, ``v (..., S, Ev)``: see the module's formulas.

    ``bias`` is the additive mask (broadcast to ``(..., L, S)``) or None;
    ``keep`` the dropout mask (booleans) or None; ``safe`` gives zero
    probabilities to a row that is masked out everywhere (NaN otherwise).
    """
    scores = (q * scale) @ xp.matrix_transpose(k)  # A = s Q Kᵀ (+ M)
    if bias is not None:
        scores = scores + bias
    if scores.shape[-1] == 0:  # no key at all: an empty softmax, and an output that sums nothing
        empty = xp.zeros_like(scores)
        return empty @ v, empty, empty
    top = xp.max(scores, axis=-1, keepdims=True)
    if safe:
        top = xp.where(top == -math.inf, xp.zeros_like(top), top)
    e = xp.exp(scores - top)
    total = xp.sum(e, axis=-1, keepdims=True)
    if safe:
        probabilities = xp.where(total > 0, e / xp.where(total > 0, total, xp.ones_like(total)), xp.zeros_like(e))
    else:
        probabilities = e / total
    dropped = probabilities if keep is None else dropout_apply(xp, probabilities, keep, p)
    return dropped @ v, probabilities, dropped


def dropout_apply(xp: ModuleType, a: Any, keep: Any, p: float) -> Any:
    """``a ⊙ D / (1 - p)``, by selection (``0 · inf`` would be NaN); ``p = 1`` drops everything."""
    kept = a / (1.0 - p) if p < 1.0 else xp.zeros_like(a)
    return xp.where(keep, kept, xp.zeros_like(a))


def attend_backward(xp: ModuleType, g: Any, g_dropped: Optional[Any], q: Any, k: Any, v: Any, scale: float,
                    probabilities: Any, dropped: Any, keep: Optional[Any], p: float) -> Tuple[Any, Any, Any]:
    r"""``(dQ, dK, dV)`` of :func:`attend`, given ``G = dL/dO`` and ``G_P = dL/dP̃`` (or None)."""
    dv = xp.matrix_transpose(dropped) @ g  # dL/dV = P̃ᵀ G
    d_dropped = g @ xp.matrix_transpose(v)  # dL/dP̃ = G Vᵀ + G_P
    if g_dropped is not None:
        d_dropped = d_dropped + g_dropped
    d_p = d_dropped if keep is None else dropout_apply(xp, d_dropped, keep, p)
    d_scores = probabilities * (d_p - xp.sum(d_p * probabilities, axis=-1, keepdims=True))  # P ⊙ (Π − ⟨Π, P⟩)
    return (d_scores @ k) * scale, (xp.matrix_transpose(d_scores) @ q) * scale, dv


def draw_keep(node: Any, shape: Tuple[int, ...], p: float, xp: ModuleType, update_state: bool) -> Optional[Any]:
    """The dropout mask of a pass (true = keep), drawn from ``node.rng`` in training with ``p > 0``, else None.

    A pass that must leave the node unchanged (``evaluate``, ``jacobian(x)``)
    uses the mask the next forward would draw, without advancing the stream.
    """
    if not node.training or p == 0.0:
        return None
    if update_state:
        node._state_will_change()
        return xp.asarray(node.rng.random(shape) >= p)
    state = node.rng.bit_generator.state
    try:
        return xp.asarray(node.rng.random(shape) >= p)
    finally:
        node.rng.bit_generator.state = state


def check_probability(who: str, p: Any, name: str) -> float:
    """A dropout probability in ``[0, 1]``; ``TypeError``/``ValueError`` naming ``name`` otherwise."""
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"{who}: {name} must be a real number, got {p!r}")
    if not 0 <= p <= 1:
        raise ValueError(f"{who}: {name} must be in [0, 1], got {p}")
    return float(p)


def check_flag(who: str, value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{who}: {name} must be a bool, got {value!r}")
    return bool(value)


def constant_mask(who: str, mask: Any, xp: ModuleType, name: str) -> Any:
    """A mask input as given (booleans, or floats to add), None for none; ``TypeError`` for anything else.

    ``np.asarray(None)`` (what a tool that converts every input makes of an absent mask) is no mask either.
    """
    if mask is None or (isinstance(mask, np.ndarray) and mask.dtype == object and mask.shape == ()
                        and mask.item() is None):
        return None
    if not is_array(mask):
        mask = np.asarray(mask)
    if namespace_of(mask) is not xp:
        raise TypeError(f"{who}: {name} is a {namespace_of(mask).__name__} array, the inputs {xp.__name__} arrays")
    if not (xp.isdtype(mask.dtype, "bool") or xp.isdtype(mask.dtype, "real floating")):
        raise TypeError(f"{who}: {name} must hold booleans or floats (an additive mask), got dtype {mask.dtype}")
    return mask


def broadcastable(shape: Tuple[int, ...], to: Tuple[int, ...]) -> bool:
    """Whether ``shape`` broadcasts to ``to`` (without changing ``to``)."""
    return len(shape) <= len(to) and all(a in (1, b) for a, b in zip(shape[::-1], to[::-1]))


# ------------------------------------------------------------------ the node
class ScaledDotProductAttention(Node):
    r"""``ScaledDotProductAttention(dropout_p, is_causal, scale)(query, key, value, attn_mask=None)``.

    The formula and its derivatives are the module's: :math:`O =
    \operatorname{softmax}(s\,QK^\top + M)\,V`.  ``query`` ``(..., L, E)``,
    ``key`` ``(..., S, E)``, ``value`` ``(..., S, Ev)`` with the same leading
    axes; the output is ``(..., L, Ev)``.  ``attn_mask`` (a constant input,
    no gradient) broadcasts to ``(..., L, S)``: booleans, **True where the
    query may attend** (torch's rule for this function), or floats added to
    the scores.  ``is_causal=True`` masks the keys after each query (and
    refuses an ``attn_mask`` too, as torch does); ``scale`` defaults to
    :math:`1/\sqrt{E}`.  Dropout on the probabilities runs in training mode
    with ``dropout_p > 0``, its mask drawn from ``rng``.  A fully masked
    row gives zeros, as torch's function does.  float16 is computed in
    float32 and rounded once.
    """

    num_inputs = 4
    constant_inputs = (3,)
    float16_in_float32 = True

    def __init__(self, dropout_p: float = 0.0, is_causal: bool = False, scale: Optional[float] = None, *,
                 rng: Any = None) -> None:
        super().__init__()
        who = "ScaledDotProductAttention"
        self.dropout_p = check_probability(who, dropout_p, "dropout_p")
        self.is_causal = check_flag(who, is_causal, "is_causal")
        if scale is not None and (isinstance(scale, (bool, np.bool_)) or not isinstance(
                scale, (int, float, np.integer, np.floating)) or not math.isfinite(scale)):
            raise TypeError(f"{who}: scale must be None or a finite real number, got {scale!r}")
        self.scale = None if scale is None else float(scale)
        self.rng = as_generator(rng)

    def config(self) -> Dict[str, Any]:
        return self._config_of("dropout_p", "is_causal", "scale")

    def run(self, query: Any, key: Any = None, value: Any = None, attn_mask: Any = None, *,
            update_state: bool = True) -> Context:
        if key is None or value is None:
            raise TypeError("ScaledDotProductAttention takes query, key and value (and attn_mask)")
        return super().run(query, key, value, attn_mask, update_state=update_state)

    def _prepare_inputs(self, inputs: Tuple[Any, ...]) -> Tuple[Tuple[Any, ...], dict]:
        xs = tuple(as_float_array(value, name) for value, name in zip(inputs[:3], ("query", "key", "value")))
        xp = namespace_of(*xs)
        mask = constant_mask("ScaledDotProductAttention", inputs[3], xp, "attn_mask")
        self._check_input(*xs, mask)
        return xs + (mask,), {}

    def _check_input(self, q: Any, k: Any, v: Any, mask: Any = None) -> None:
        who = "ScaledDotProductAttention"
        if q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim:
            raise ValueError(f"{who}: query, key and value must have the same number of axes (at least 2: "
                             f"(..., L, E)), got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
        if tuple(q.shape[:-2]) != tuple(k.shape[:-2]) or tuple(k.shape[:-2]) != tuple(v.shape[:-2]):
            raise ValueError(f"{who}: query, key and value must share their leading axes, got {tuple(q.shape)}, "
                             f"{tuple(k.shape)}, {tuple(v.shape)}")
        if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
            raise ValueError(f"{who}: query (..., L, E), key (..., S, E) and value (..., S, Ev) must agree on E and "
                             f"S, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
        if q.shape[-1] == 0 and self.scale is None:
            raise ValueError(f"{who}: an embedding of size 0 has no default scale 1/sqrt(E)")
        scores = tuple(q.shape[:-1]) + (k.shape[-2],)
        if mask is not None:
            if self.is_causal:
                raise ValueError(f"{who}: give attn_mask or is_causal=True, not both (as torch)")
            if not broadcastable(tuple(mask.shape), scores):
                raise ValueError(f"{who}: attn_mask of shape {tuple(mask.shape)} does not broadcast to the scores' "
                                 f"shape {scores}")

    def _scale(self, q: Any) -> float:
        return self.scale if self.scale is not None else 1.0 / math.sqrt(q.shape[-1])

    def _forward(self, q: Any, k: Any, v: Any, mask: Any, ctx: Context) -> Any:
        xp = ctx.xp
        dtype = xp.result_type(q.dtype, k.dtype, v.dtype)
        q, k, v = (xp.astype(a, dtype, copy=False) for a in (q, k, v))
        bias = causal_bias(xp, q.shape[-2], k.shape[-2], dtype) if self.is_causal else mask_as_bias(
            xp, mask, dtype, masked_when=False)
        ctx.keep = draw_keep(self, tuple(q.shape[:-1]) + (k.shape[-2],), self.dropout_p, xp, ctx.update_state)
        ctx.qkv = (q, k, v)
        y, ctx.probabilities, ctx.dropped = attend(xp, q, k, v, self._scale(q), bias, ctx.keep, self.dropout_p, True)
        return y

    def _vjp(self, g: Any, ctx: Context) -> Tuple[Any, Any, Any, None]:
        xp, (q, k, v) = ctx.xp, ctx.qkv
        grads = attend_backward(xp, g, None, q, k, v, self._scale(q), ctx.probabilities, ctx.dropped, ctx.keep,
                                self.dropout_p)
        return tuple(xp.astype(d, x.dtype, copy=False) for d, x in zip(grads, ctx.inputs[:3])) + (None,)

    def extra_repr(self) -> str:
        return f"dropout_p={self.dropout_p}, is_causal={self.is_causal}, scale={self.scale}"


def scaled_dot_product_attention(query: Any, key: Any, value: Any, attn_mask: Any = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: Optional[float] = None, *, rng: Any = None) -> Any:
    """``torch.nn.functional.scaled_dot_product_attention``: :class:`ScaledDotProductAttention`'s output.

    Dropout applies whenever ``dropout_p > 0`` (as torch's function), its mask drawn from ``rng``.
    """
    node = ScaledDotProductAttention(dropout_p, is_causal, scale, rng=rng)
    return node.run(query, key, value, attn_mask).y
