r"""Multi-head attention, as ``torch.nn.MultiheadAttention``: its arguments, weight layout and state-dict keys."""
from __future__ import annotations

import math
import threading
from types import ModuleType
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..backend import namespace_of, numpy_dtype
from ..context import Context, as_float_array
from ..node import Node
from ..parameter import Parameter
from ..random import as_generator
from .attention import (attend, attend_backward, check_flag, check_probability, constant_mask, draw_keep,
                        mask_as_bias)
from .linear import Linear, config_size, float_dtype, positive_sizes

__all__ = ["MultiheadAttention"]


def _xavier(rng: np.random.Generator, shape: Tuple[int, int]) -> np.ndarray:
    """torch's ``xavier_uniform_``: :math:`U(-a, a)`, :math:`a = \\sqrt{6/(\\text{fan\\_in} + \\text{fan\\_out})}`."""
    bound = math.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-bound, bound, size=shape)


class MultiheadAttention(Node):
    r"""Multi-head attention: ``MultiheadAttention(embed_dim, num_heads)(query, key, value)``, as torch.

    With :math:`H` heads of size :math:`D = E/H`, the input projections
    :math:`W_q, W_k, W_v` (the three blocks of ``in_proj_weight``
    ``(3E, E)``, or ``q_proj_weight`` ``(E, E)``, ``k_proj_weight``
    ``(E, kdim)``, ``v_proj_weight`` ``(E, vdim)`` when ``kdim``/``vdim``
    differ from :math:`E`), their biases (``in_proj_bias`` ``(3E,)``) and the
    output projection ``out_proj`` (a :class:`Linear`), on one batch entry:

    .. math::
        \bar Q = q W_q^\top + b_q, \quad \bar K = k W_k^\top + b_k, \quad \bar V = v W_v^\top + b_v, \qquad
        O_h = \operatorname{softmax}\Big(\frac{\bar Q_h \bar K_h^\top}{\sqrt D} + M\Big) \bar V_h, \qquad
        y = [O_1 \cdots O_H]\, W_o^\top + b_o,

    :math:`\bar Q_h` the :math:`h`-th block of :math:`D` columns.  The
    attention's derivatives are :mod:`~nn_from_scratch.nodes.attention`'s;
    a projection's are :class:`Linear`'s (:math:`\partial L/\partial W_q =
    \sum_n G_{\bar Q}^\top q`, :math:`\partial L/\partial q = G_{\bar Q} W_q`).

    ``forward(query, key, value, key_padding_mask=None, need_weights=True,
    attn_mask=None, average_attn_weights=True, is_causal=False)`` returns
    ``(attn_output, attn_weights)`` as torch: inputs ``(L, N, E)``
    (``batch_first=True``: ``(N, L, E)``; or unbatched ``(L, E)``);
    ``key_padding_mask`` ``(N, S)`` and ``attn_mask`` ``(L, S)`` or
    ``(N·H, L, S)``, booleans **True where attention is not allowed** (this
    layer's rule, the opposite of scaled_dot_product_attention's) or floats
    added to the scores.  ``is_causal`` is torch's hint: it needs
    ``attn_mask`` (the causal mask itself) and changes nothing else.  The
    weights are the probabilities (after dropout), averaged over the heads
    ``(N, L, S)`` or per head ``(N, H, L, S)``; None when ``need_weights=False``.
    A row masked out everywhere is NaN when the weights are returned and
    zero when not, torch's two paths.

    Both outputs have a gradient: ``backward((g_out, g_weights))``, with
    None (or a single array) when the loss reads the output alone.  The
    masks are constant inputs (no gradient: None).  ``add_bias_kv`` and
    ``add_zero_attn`` are not implemented (``ValueError``).  Dropout on the
    probabilities runs in training mode, its mask drawn from ``rng``.
    """

    num_inputs = 5  # query, key, value, key_padding_mask, attn_mask
    constant_inputs = (3, 4)

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: Optional[int] = None,
                 vdim: Optional[int] = None, batch_first: bool = False, device: Any = None, dtype: Any = None, *,
                 rng: Any = None) -> None:
        who = "MultiheadAttention"
        self.embed_dim, self.num_heads = positive_sizes(embed_dim=embed_dim, num_heads=num_heads)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"{who}: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.kdim, self.vdim = positive_sizes(kdim=embed_dim if kdim is None else kdim,
                                              vdim=embed_dim if vdim is None else vdim)
        self.dropout = check_probability(who, dropout, "dropout")
        self.batch_first = check_flag(who, batch_first, "batch_first")
        if check_flag(who, add_bias_kv, "add_bias_kv") or check_flag(who, add_zero_attn, "add_zero_attn"):
            raise ValueError(f"{who}: add_bias_kv and add_zero_attn are not implemented")
        if device not in (None, "cpu"):
            raise ValueError(f"{who}: device must be None or 'cpu' (move a model with set_backend), got {device!r}")
        super().__init__()
        self.head_dim = self.embed_dim // self.num_heads
        self._qkv_same_embed_dim = self.kdim == self.embed_dim and self.vdim == self.embed_dim
        dtype = float_dtype(np.float64 if dtype is None else dtype)
        generator = as_generator(rng)
        self.rng = generator
        E = self.embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight: Optional[Parameter] = Parameter(_xavier(generator, (3 * E, E)).astype(dtype))
        else:
            self.q_proj_weight = Parameter(_xavier(generator, (E, E)).astype(dtype))
            self.k_proj_weight = Parameter(_xavier(generator, (E, self.kdim)).astype(dtype))
            self.v_proj_weight = Parameter(_xavier(generator, (E, self.vdim)).astype(dtype))
        self.in_proj_bias: Optional[Parameter] = Parameter(np.zeros(3 * E, dtype=dtype)) if bias else None
        self.out_proj = Linear(E, E, bias, rng=generator, dtype=dtype)
        if bias:
            self.out_proj.bias.value[...] = 0.0
        self._call: dict = {}  # thread -> the keyword options of the call under way

    def children(self) -> List[Tuple[str, Any]]:
        return [("out_proj", self.out_proj)]

    @property
    def dtype(self) -> Any:
        return self.out_proj.dtype

    def config(self) -> Dict[str, Any]:
        return self._config_of("embed_dim", "num_heads", "dropout", bias=self.in_proj_bias is not None,
                               kdim=self.kdim, vdim=self.vdim, batch_first=self.batch_first,
                               dtype=numpy_dtype(self.out_proj.weight.value))

    @classmethod
    def config_elements(cls, config: Dict[str, Any]) -> int:
        """The weights' elements from an unchecked config: ``E (2E + kdim + vdim + 4)``."""
        embed = config_size(config, "embed_dim")
        kdim, vdim = (embed if config.get(key) is None else config_size(config, key) for key in ("kdim", "vdim"))
        return embed * (2 * embed + kdim + vdim + 4)

    # ---------------------------------------------------------------- the faces, with torch's keyword arguments
    def forward(self, query: Any, key: Any = None, value: Any = None, key_padding_mask: Any = None,
                need_weights: bool = True, attn_mask: Any = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> Tuple[Any, Optional[Any]]:
        """``(attn_output, attn_weights)`` as torch's forward; the pass is kept for ``backward``."""
        ctx = self._keep(lambda: self.run(query, key, value, key_padding_mask, attn_mask, need_weights=need_weights,
                                          average_attn_weights=average_attn_weights, is_causal=is_causal))
        return ctx.y[0], (ctx.y[1] if ctx.need_weights else None)

    def evaluate(self, query: Any, key: Any = None, value: Any = None, key_padding_mask: Any = None,
                 need_weights: bool = True, attn_mask: Any = None, average_attn_weights: bool = True,
                 is_causal: bool = False) -> Tuple[Any, Optional[Any]]:
        ctx = self.run(query, key, value, key_padding_mask, attn_mask, need_weights=need_weights,
                       average_attn_weights=average_attn_weights, is_causal=is_causal, update_state=False)
        return ctx.y[0], (ctx.y[1] if ctx.need_weights else None)

    def backward(self, dL_dy: Any, reset_after: bool = True, *, input_grad: bool = True) -> Any:
        """``dL_dy``: ``(g_out, g_weights)`` (None for an output the loss ignores) or ``g_out`` alone."""
        if not isinstance(dL_dy, (tuple, list)):
            dL_dy = (dL_dy, None)
        return super().backward(tuple(dL_dy), reset_after, input_grad=input_grad)

    def run(self, query: Any, key: Any = None, value: Any = None, key_padding_mask: Any = None,
            attn_mask: Any = None, *, need_weights: bool = True, average_attn_weights: bool = True,
            is_causal: bool = False, update_state: bool = True) -> Context:
        """The context call: ``key`` and ``value`` default to ``query`` (self-attention); outputs ``(out, weights)``."""
        who = "MultiheadAttention"
        self._call[threading.get_ident()] = {  # read by _prepare_inputs, in this thread's pass
            "need_weights": check_flag(who, need_weights, "need_weights"),
            "average_attn_weights": check_flag(who, average_attn_weights, "average_attn_weights"),
            "is_causal": check_flag(who, is_causal, "is_causal")}
        key = query if key is None else key
        value = key if value is None else value
        return super().run(query, key, value, key_padding_mask, attn_mask, update_state=update_state)

    # ---------------------------------------------------------------- inputs
    def _prepare_inputs(self, inputs: Tuple[Any, ...]) -> Tuple[Tuple[Any, ...], dict]:
        call = self._call.pop(threading.get_ident(), None) or {"need_weights": True, "average_attn_weights": True,
                                                                "is_causal": False}
        xs = tuple(as_float_array(v, name) for v, name in zip(inputs[:3], ("query", "key", "value")))
        xp = namespace_of(*xs)
        self._check_namespace(xp)
        masks = tuple(constant_mask("MultiheadAttention", m, xp, name)
                      for m, name in zip(inputs[3:], ("key_padding_mask", "attn_mask")))
        self._check_input(*xs, *masks)
        if call["is_causal"] and masks[1] is None:
            raise ValueError("MultiheadAttention: is_causal=True needs attn_mask (the causal mask): it is a hint, "
                             "as in torch")
        return xs + masks, call

    def _check_input(self, q: Any, k: Any, v: Any, padding: Any = None, mask: Any = None) -> None:
        who = "MultiheadAttention"
        if q.ndim not in (2, 3) or k.ndim != q.ndim or v.ndim != q.ndim:
            raise ValueError(f"{who}: query, key and value must all be batched (3 axes) or all unbatched (2 axes), "
                             f"got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
        for x, size, name in ((q, self.embed_dim, "query"), (k, self.kdim, "key"), (v, self.vdim, "value")):
            if x.shape[-1] != size:
                raise ValueError(f"{who}: {name} must have {size} features on its last axis, got {tuple(x.shape)}")
        batched = q.ndim == 3
        b_axis, t_axis = (0, 1) if self.batch_first else (1, 0)
        if batched and not (q.shape[b_axis] == k.shape[b_axis] == v.shape[b_axis]):
            raise ValueError(f"{who}: query, key and value must have the same batch size (axis {b_axis}), got "
                             f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
        t_axis = t_axis if batched else 0
        if k.shape[t_axis] != v.shape[t_axis]:
            raise ValueError(f"{who}: key and value must have the same sequence length, got {tuple(k.shape)}, "
                             f"{tuple(v.shape)}")
        n, length, source = (q.shape[b_axis] if batched else None), q.shape[t_axis], k.shape[t_axis]
        if padding is not None:
            expected = (n, source) if batched else (source,)
            if tuple(padding.shape) != expected:
                raise ValueError(f"{who}: key_padding_mask must have shape {expected}, got {tuple(padding.shape)}")
        if mask is not None:
            allowed = [(length, source), ((n if batched else 1) * self.num_heads, length, source)]
            if tuple(mask.shape) not in allowed:
                raise ValueError(f"{who}: attn_mask must have shape {allowed[0]} or {allowed[1]}, got "
                                 f"{tuple(mask.shape)}")

    # ---------------------------------------------------------------- the pass
    def _projections(self) -> Tuple[Any, Any, Any]:
        if self._qkv_same_embed_dim:
            w, E = self.in_proj_weight.value, self.embed_dim
            return w[:E, :], w[E:2 * E, :], w[2 * E:, :]
        return self.q_proj_weight.value, self.k_proj_weight.value, self.v_proj_weight.value

    def _to_batch_first(self, xp: ModuleType, x: Any) -> Any:
        """An input as ``(N, T, features)``: unbatched gets a batch of one, ``(T, N, ·)`` is transposed."""
        if x.ndim == 2:
            return xp.expand_dims(x, axis=0)
        return x if self.batch_first else xp.permute_dims(x, (1, 0, 2))

    def _from_batch_first(self, xp: ModuleType, y: Any, like: Any) -> Any:
        if like.ndim == 2:
            return y[0, ...]
        return y if self.batch_first else xp.permute_dims(y, (1, 0, 2))

    def _heads(self, xp: ModuleType, x: Any) -> Any:
        """``(N, T, E)`` -> ``(N, H, T, D)``."""
        n, t, _ = x.shape
        return xp.permute_dims(xp.reshape(x, (n, t, self.num_heads, self.head_dim)), (0, 2, 1, 3))

    def _merge(self, xp: ModuleType, x: Any) -> Any:
        """``(N, H, T, D)`` -> ``(N, T, E)``."""
        n, _, t, _ = x.shape
        return xp.reshape(xp.permute_dims(x, (0, 2, 1, 3)), (n, t, self.embed_dim))

    def _bias(self, xp: ModuleType, padding: Any, mask: Any, n: int, dtype: Any) -> Optional[Any]:
        """The additive mask of the scores ``(N, H, L, S)`` (broadcast), from both masks; None without either."""
        total = None
        if padding is not None:
            pad = mask_as_bias(xp, padding, dtype, masked_when=True)
            total = xp.reshape(pad, (n, 1, 1, pad.shape[-1]))
        if mask is not None:
            m = mask_as_bias(xp, mask, dtype, masked_when=True)
            m = xp.reshape(m, (n, self.num_heads) + tuple(m.shape[-2:])) if m.ndim == 3 else m
            total = m if total is None else total + m
        return total

    def _forward(self, q: Any, k: Any, v: Any, padding: Any, mask: Any, ctx: Context) -> Tuple[Any, Any]:
        xp, dtype = ctx.xp, self.dtype
        xs = [self._to_batch_first(xp, xp.astype(x, dtype, copy=False)) for x in (q, k, v)]
        ctx.projected_inputs = xs
        b = [None] * 3 if self.in_proj_bias is None else [
            self.in_proj_bias.value[i * self.embed_dim:(i + 1) * self.embed_dim] for i in range(3)]
        projected = [x @ w.T if bias is None else x @ w.T + bias for x, w, bias in zip(xs, self._projections(), b)]
        qh, kh, vh = (self._heads(xp, p) for p in projected)
        ctx.heads = (qh, kh, vh)
        n = qh.shape[0]
        if padding is not None and q.ndim == 2:
            padding = xp.expand_dims(padding, axis=0)
        bias = self._bias(xp, padding, mask, n, dtype)
        ctx.keep = draw_keep(self, tuple(qh.shape[:-1]) + (kh.shape[-2],), self.dropout, xp, ctx.update_state)
        ctx.scale = 1.0 / math.sqrt(self.head_dim)
        oh, ctx.probabilities, ctx.dropped = attend(xp, qh, kh, vh, ctx.scale, bias, ctx.keep, self.dropout,
                                                    safe=not ctx.need_weights)
        ctx.out_ctx = self.out_proj.run(self._merge(xp, oh), update_state=ctx.update_state)
        out = self._from_batch_first(xp, ctx.out_ctx.y, q)
        weights = xp.mean(ctx.dropped, axis=1) if ctx.average_attn_weights else ctx.dropped
        return out, (weights[0, ...] if q.ndim == 2 else weights)

    def _gradients(self, g: Tuple[Any, Any], ctx: Context, input_grad: bool, params: bool) -> Any:
        xp = ctx.xp
        g_out, g_weights = g
        g_out = self._to_batch_first(xp, g_out)
        if params:
            d_merged = self.out_proj.backward_from(ctx.out_ctx, g_out)
        else:
            d_merged = self.out_proj.vjp_from(ctx.out_ctx, g_out)
        if ctx.inputs[0].ndim == 2:
            g_weights = xp.expand_dims(g_weights, axis=0)
        g_dropped = xp.expand_dims(g_weights, axis=1) / self.num_heads if ctx.average_attn_weights else g_weights
        qh, kh, vh = ctx.heads
        d_heads = attend_backward(xp, self._heads(xp, d_merged), g_dropped, qh, kh, vh, ctx.scale, ctx.probabilities,
                                  ctx.dropped, ctx.keep, self.dropout)
        d_projected = [self._merge(xp, d) for d in d_heads]  # dL/dQ̄, dL/dK̄, dL/dV̄: (N, T, E)
        if params:
            self._accumulate_projections(xp, d_projected, ctx)
        if not input_grad:
            return None
        grads = tuple(self._from_batch_first(xp, d @ w, x)
                      for d, w, x in zip(d_projected, self._projections(), ctx.inputs[:3]))
        return tuple(xp.astype(d, x.dtype, copy=False) for d, x in zip(grads, ctx.inputs[:3])) + (None, None)

    def _accumulate_projections(self, xp: ModuleType, d_projected: List[Any], ctx: Context) -> None:
        rows = [xp.reshape(d, (-1, self.embed_dim)) for d in d_projected]
        inputs = [xp.reshape(x, (-1, x.shape[-1])) for x in ctx.projected_inputs]
        d_weights = [r.T @ x for r, x in zip(rows, inputs)]  # dL/dW = Gᵀ x, per projection
        if self._qkv_same_embed_dim:
            self.in_proj_weight.accumulate(xp.concat(d_weights, axis=0))
        else:
            for p, d in zip((self.q_proj_weight, self.k_proj_weight, self.v_proj_weight), d_weights):
                p.accumulate(d)
        if self.in_proj_bias is not None:
            self.in_proj_bias.accumulate(xp.concat([xp.sum(r, axis=0) for r in rows], axis=0))

    def _backward(self, g: Any, ctx: Context, input_grad: bool) -> Any:
        return self._gradients(g, ctx, input_grad, True)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return self._gradients(g, ctx, True, False)

    def extra_repr(self) -> str:
        extra = "" if self._qkv_same_embed_dim else f", kdim={self.kdim}, vdim={self.vdim}"
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
                f"bias={self.in_proj_bias is not None}{extra}, batch_first={self.batch_first}")
