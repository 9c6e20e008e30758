r"""The transformer layer, as ``torch.nn.TransformerEncoderLayer``, and the decoder-only block built on it.

Post-norm (``norm_first=False``, torch's default) and pre-norm, with the
sublayers :math:`\operatorname{SA}(x)` = self-attention (then dropout) and
:math:`\operatorname{FF}(x) = W_2\,\operatorname{drop}(\operatorname{act}(W_1 x + b_1)) + b_2` (then dropout):

.. math::
    \text{post: } h = \operatorname{LN}_1(x + \operatorname{SA}(x)), \quad y = \operatorname{LN}_2(h + \operatorname{FF}(h));
    \qquad
    \text{pre: } h = x + \operatorname{SA}(\operatorname{LN}_1 x), \quad y = h + \operatorname{FF}(\operatorname{LN}_2 h).

The derivative is the chain rule through those sublayers, each giving its
own (:class:`MultiheadAttention`, :class:`Linear`, :class:`LayerNorm`, the
activation, :class:`Dropout`): a residual sum passes the gradient to both of
its terms, :math:`\partial L/\partial x = g + J_{\text{SA}}^\top g` for
:math:`x + \operatorname{SA}(x)`, and self-attention's three inputs are one,
so their gradients add.
"""
from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..backend import numpy_dtype
from ..context import Context
from ..node import Node
from ..random import as_generator
from .activations import GELU, ReLU
from .attention import check_flag, check_probability
from .layer_norm import LayerNorm
from .linear import Linear, config_size, float_dtype, positive_sizes
from .multihead_attention import MultiheadAttention
from .regularization import Dropout

__all__ = ["TransformerDecoderBlock", "TransformerEncoderLayer"]

ACTIVATIONS = {"relu": ReLU, "gelu": GELU}


def _activation(value: Union[str, Node]) -> Node:
    if isinstance(value, Node):
        return value
    if isinstance(value, str) and value in ACTIVATIONS:
        return ACTIVATIONS[value]()
    raise ValueError(f"activation must be 'relu', 'gelu' or a Node, got {value!r}")


class TransformerEncoderLayer(Node):
    r"""A transformer layer (self-attention and a feed-forward network), as ``torch.nn.TransformerEncoderLayer``.

    The formulas are the module's.  Arguments, defaults and their order are
    torch's; the sublayers carry torch's names (``self_attn``, ``linear1``,
    ``dropout``, ``linear2``, ``norm1``, ``norm2``, ``dropout1``,
    ``dropout2``), so the state dict's keys (``self_attn.in_proj_weight``,
    ``linear1.weight``, ``norm1.bias``, ...) and layouts are torch's and
    weights move both ways unchanged.  ``forward(src, src_mask=None,
    src_key_padding_mask=None, is_causal=False)``; the masks are
    :class:`MultiheadAttention`'s (True where attention is not allowed, or
    additive), ``is_causal`` its hint.  Input ``(T, N, E)``,
    ``batch_first=True``: ``(N, T, E)``, or unbatched ``(T, E)``.
    ``activation``: ``"relu"``, ``"gelu"`` or a Node.  Dropout (default 0.1,
    as torch) runs in training mode; ``eval()`` turns it off.  ``rng`` seeds
    the weights and the dropout masks.
    """

    causal = False  # the decoder-only block masks the future itself
    node_arguments = ("activation",)  # a Node given as the activation is saved as its own record

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Union[str, Node] = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device: Any = None, dtype: Any = None, *,
                 rng: Any = None) -> None:
        who = type(self).__name__
        d_model, nhead, dim_feedforward = positive_sizes(d_model=d_model, nhead=nhead,
                                                         dim_feedforward=dim_feedforward)
        p = check_probability(who, dropout, "dropout")
        self.batch_first = check_flag(who, batch_first, "batch_first")
        self.norm_first = check_flag(who, norm_first, "norm_first")
        activation_node = _activation(activation)
        super().__init__()
        dtype = float_dtype(np.float64 if dtype is None else dtype)
        generator = as_generator(rng)
        self.d_model = d_model
        self.self_attn = MultiheadAttention(d_model, nhead, p, bias, batch_first=True, device=device, dtype=dtype,
                                            rng=generator)
        self.linear1 = Linear(d_model, dim_feedforward, bias, rng=generator, dtype=dtype)
        self.dropout = Dropout(p, rng=generator)
        self.linear2 = Linear(dim_feedforward, d_model, bias, rng=generator, dtype=dtype)
        self.norm1 = LayerNorm(d_model, layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(p, rng=generator)
        self.dropout2 = Dropout(p, rng=generator)
        self.activation = activation_node
        self._activation_name = activation if isinstance(activation, str) else None
        self._call: dict = {}  # thread -> the keyword options of the call under way

    def children(self) -> List[Tuple[str, Any]]:
        return [(name, getattr(self, name)) for name in ("self_attn", "linear1", "dropout", "linear2", "norm1",
                                                          "norm2", "dropout1", "dropout2", "activation")]

    @property
    def dtype(self) -> Any:
        return self.linear1.dtype

    def config(self) -> Dict[str, Any]:
        """The arguments; an ``activation`` given as a Node is that node (the record describes it by its own)."""
        return {**self._config_of("d_model", nhead=self.self_attn.num_heads,
                                  dim_feedforward=self.linear1.out_features, dropout=self.dropout.p),
                "activation": self.activation if self._activation_name is None else self._activation_name,
                **self._config_of(layer_norm_eps=self.norm1.eps, batch_first=self.batch_first,
                                  norm_first=self.norm_first, bias=self.linear1.bias is not None,
                                  dtype=numpy_dtype(self.linear1.weight.value))}

    @classmethod
    def config_elements(cls, config: Dict[str, Any]) -> int:
        """The weights' elements from an unchecked config: ``E (4E + 2F + 10) + F`` for ``d_model`` E and
        ``dim_feedforward`` F (self-attention, the two linear layers, the two norms)."""
        embed, feedforward = config_size(config, "d_model"), config_size(config, "dim_feedforward", 2048)
        return embed * (4 * embed + 2 * feedforward + 10) + feedforward

    # ---------------------------------------------------------------- the faces, with torch's keyword arguments
    def forward(self, src: Any, src_mask: Any = None, src_key_padding_mask: Any = None,
                is_causal: bool = False) -> Any:
        return self._keep(lambda: self.run(src, src_mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                                           is_causal=is_causal)).y

    def evaluate(self, src: Any, src_mask: Any = None, src_key_padding_mask: Any = None,
                 is_causal: bool = False) -> Any:
        return self.run(src, src_mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal,
                        update_state=False).y

    def run(self, src: Any, *, src_mask: Any = None, src_key_padding_mask: Any = None, is_causal: bool = False,
            update_state: bool = True) -> Context:
        self._call[threading.get_ident()] = {  # read by _prepare_inputs, in this thread's pass
            "src_mask": src_mask, "src_key_padding_mask": src_key_padding_mask,
            "is_causal": check_flag(type(self).__name__, is_causal, "is_causal")}
        return super().run(src, update_state=update_state)

    def _prepare_inputs(self, inputs: Tuple[Any, ...]) -> Tuple[Tuple[Any, ...], dict]:
        call = self._call.pop(threading.get_ident(), None) or {"src_mask": None, "src_key_padding_mask": None,
                                                                "is_causal": False}
        xs, _ = super()._prepare_inputs(inputs)
        return xs, call

    def _check_input(self, x: Any) -> None:
        if x.ndim not in (2, 3) or x.shape[-1] != self.d_model:
            raise ValueError(f"{type(self).__name__} expects input (T, N, {self.d_model}), (N, T, {self.d_model}) "
                             f"with batch_first=True, or unbatched (T, {self.d_model}); got {tuple(x.shape)}")

    # ---------------------------------------------------------------- the pass: the sublayers' context calls
    def _forward(self, x: Any, ctx: Context) -> Any:
        xp, keep = ctx.xp, ctx.update_state
        h = xp.astype(x, self.dtype, copy=False)
        if x.ndim == 3 and not self.batch_first:
            h = xp.permute_dims(h, (1, 0, 2))  # self_attn runs batch first
        mask, is_causal = ctx.src_mask, ctx.is_causal
        if self.causal:
            length = h.shape[-2]
            mask, is_causal = xp.arange(length)[None, :] > xp.arange(length)[:, None], True
        ctx.steps = {}

        def step(name: str, value: Any) -> Any:
            ctx.steps[name] = getattr(self, name).run(value, update_state=keep)
            return ctx.steps[name].y

        def attention(value: Any) -> Any:
            ctx.steps["self_attn"] = self.self_attn.run(value, value, value, ctx.src_key_padding_mask, mask,
                                                        need_weights=False, is_causal=is_causal, update_state=keep)
            return step("dropout1", ctx.steps["self_attn"].y[0])

        def feed_forward(value: Any) -> Any:
            inner = step("dropout", step("activation", step("linear1", value)))
            return step("dropout2", step("linear2", inner))

        if self.norm_first:
            h = h + attention(step("norm1", h))
            y = h + feed_forward(step("norm2", h))
        else:
            h = step("norm1", h + attention(h))
            y = step("norm2", h + feed_forward(h))
        return xp.permute_dims(y, (1, 0, 2)) if x.ndim == 3 and not self.batch_first else y

    def attention_weights(self, src: Any, src_mask: Any = None, src_key_padding_mask: Any = None,
                          is_causal: bool = False) -> Any:
        """The self-attention probabilities of ``src``, per head: ``(N, H, T, T)`` (``(H, T, T)`` unbatched).

        Row :math:`i` is how query :math:`i` weighs the keys, before dropout;
        the node is left as it was (an ``evaluate``).
        """
        ctx = self.run(src, src_mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal,
                       update_state=False)
        probabilities = ctx.steps["self_attn"].probabilities
        return probabilities[0, ...] if ctx.x.ndim == 2 else probabilities

    def _gradients(self, g: Any, ctx: Context, input_grad: bool, params: bool) -> Optional[Any]:
        xp = ctx.xp

        def back(name: str, grad: Any) -> Any:
            node, step = getattr(self, name), ctx.steps[name]
            return node.backward_from(step, grad) if params else node.vjp_from(step, grad)

        def attention_back(grad: Any) -> Any:
            grad = back("dropout1", grad)
            step = ctx.steps["self_attn"]
            dq, dk, dv, _, _ = (self.self_attn.backward_from(step, (grad, None)) if params
                                else self.self_attn.vjp_from(step, (grad, None)))
            return dq + dk + dv  # one input, three uses

        def feed_forward_back(grad: Any) -> Any:
            grad = back("linear2", back("dropout2", grad))
            return back("linear1", back("activation", back("dropout", grad)))

        if x_transposed := (ctx.x.ndim == 3 and not self.batch_first):
            g = xp.permute_dims(g, (1, 0, 2))
        if self.norm_first:  # h = x + SA(LN1 x), y = h + FF(LN2 h)
            dh = g + back("norm2", feed_forward_back(g))
            dx = dh + back("norm1", attention_back(dh))
        else:  # h = LN1(x + SA(x)), y = LN2(h + FF(h))
            ds = back("norm2", g)
            dh = back("norm1", ds + feed_forward_back(ds))
            dx = dh + attention_back(dh)
        if not input_grad:
            return None
        dx = xp.permute_dims(dx, (1, 0, 2)) if x_transposed else dx
        return xp.astype(dx, ctx.x.dtype, copy=False)

    def _backward(self, g: Any, ctx: Context, input_grad: bool) -> Any:
        return self._gradients(g, ctx, input_grad, True)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return self._gradients(g, ctx, True, False)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, nhead={self.self_attn.num_heads}, "
                f"dim_feedforward={self.linear1.out_features}, dropout={self.dropout.p}, "
                f"activation={type(self.activation).__name__}, batch_first={self.batch_first}, "
                f"norm_first={self.norm_first}")


class TransformerDecoderBlock(TransformerEncoderLayer):
    r"""The decoder-only (GPT) block for language modelling: a pre-norm transformer layer that masks the future.

    The formulas are :class:`TransformerEncoderLayer`'s with the causal mask
    :math:`M_{ij} = -\infty` for :math:`j > i`: each position attends to
    itself and the positions before it.  Input ``(N, T, E)`` (batch first)
    or ``(T, E)``; it takes no mask, so it sits in a :class:`Sequential`.
    Its torch twin is ``nn.TransformerEncoderLayer(..., batch_first=True,
    norm_first=True)`` called with ``src_mask=nn.Transformer.generate_square_subsequent_mask(T),
    is_causal=True``; the state dict is the same.  Defaults: GELU, dropout 0.1.
    """

    causal = True

    def config(self) -> Dict[str, Any]:
        config = super().config()
        del config["batch_first"]  # always batch first
        return config

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Union[str, Node] = "gelu", layer_norm_eps: float = 1e-5, norm_first: bool = True,
                 bias: bool = True, dtype: Any = None, *, rng: Any = None) -> None:
        super().__init__(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, True, norm_first,
                         bias, None, dtype, rng=rng)

    def run(self, src: Any, *, src_mask: Any = None, src_key_padding_mask: Any = None, is_causal: bool = False,
            update_state: bool = True) -> Context:
        if src_mask is not None:
            raise ValueError("TransformerDecoderBlock makes its own causal mask: give no src_mask")
        return super().run(src, src_key_padding_mask=src_key_padding_mask, update_state=update_state)
