r"""Losses of pairs and triplets of predictions: CosineEmbeddingLoss, MarginRankingLoss, TripletMarginLoss.

Each prediction is a tuple (see :mod:`.several`): ``forward((x1, x2), y)``
or torch's ``forward(x1, x2, y)``, and the gradient is one array per
prediction.  The targets ``y`` are 1 or -1 (torch reads other values as
neither and gives them no loss or a scaled one; here they are refused).
Where a hinge :math:`\max(z, 0)` meets :math:`z = 0` the gradient is the
one of the active side, as torch's ``clamp_min``.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

from ..backend import namespace_of, to_numpy
from ..context import Context, as_float_array
from .base import flag, real_number, resolve_reduction
from .several import SeveralPredictionsLoss

__all__ = ["CosineEmbeddingLoss", "MarginRankingLoss", "TripletMarginLoss"]

#: torch's :math:`\epsilon` added to each squared norm in the cosine of CosineEmbeddingLoss.
COSINE_EPSILON = 1e-12


def _sign_target(target: Any, like: Any, shape: Tuple[int, ...], who: str) -> Any:
    """The target as ±1 numbers of ``shape``, in the namespace and dtype of ``like``, or a clear error."""
    xp = namespace_of(like)
    t = as_float_array(target if namespace_of(target) is xp else xp.asarray(to_numpy(target)), "target")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{who}: target must have shape {tuple(shape)} (one 1 or -1 per pair), got {tuple(t.shape)}")
    if not bool(xp.all(xp.logical_or(t == 1, t == -1))):
        raise ValueError(f"{who}: target must hold 1 (alike, ranked first) or -1 (unlike, ranked second) only")
    return xp.astype(t, like.dtype, copy=False)


class _PairLoss(SeveralPredictionsLoss):
    """Two predictions ``(input1, input2)``, a ±1 target and a margin: torch's argument order."""

    prediction_names = ("input1", "input2")
    torch_order = ("input1", "input2", "target")

    def __init__(self, margin: float = 0.0, size_average: Optional[bool] = None, reduce: Optional[bool] = None,
                 reduction: str = "mean") -> None:
        super().__init__(resolve_reduction(reduction, size_average, reduce))
        self.margin = real_number(margin, "margin", type(self).__name__)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", margin={self.margin:g}"


class CosineEmbeddingLoss(_PairLoss):
    r"""Cosine embedding loss, as ``torch.nn.CosineEmbeddingLoss(margin=0.0, size_average=None, reduce=None,
    reduction='mean')``.

    Inputs :math:`x_1, x_2` of shape ``(N, D)`` (or ``(D,)``), a target
    :math:`y \in \{1, -1\}` per pair, ``(N,)`` (or ``()``).  With torch's
    :math:`\epsilon = 10^{-12}` in each squared norm,
    :math:`a = \lVert x_1\rVert^2 + \epsilon`, :math:`b = \lVert x_2\rVert^2 + \epsilon`
    and :math:`c = \langle x_1, x_2\rangle / \sqrt{ab}`:

    .. math::
        \ell = \begin{cases} 1 - c & y = 1 \\ \max(0,\ c - \text{margin}) & y = -1 \end{cases}, \qquad
        \frac{\partial c}{\partial x_1} = \frac{x_2}{\sqrt{ab}} - c\,\frac{x_1}{a}, \quad
        \frac{\partial c}{\partial x_2} = \frac{x_1}{\sqrt{ab}} - c\,\frac{x_2}{b},

    and :math:`\partial\ell/\partial c` is -1 for :math:`y = 1`, 1 where
    :math:`c \ge` margin for :math:`y = -1`, else 0.  One loss per pair.
    """

    def _check_predictions(self, parts: Tuple[Any, ...]) -> None:
        self._same_shapes(parts, ndims=(1, 2))

    def _prepare_target(self, target: Any, prediction: Any) -> Any:
        return _sign_target(target, prediction[0], tuple(prediction[0].shape[:-1]), "CosineEmbeddingLoss")

    def _forward(self, x1: Any, x2: Any, ctx: Context) -> Any:
        xp, y = ctx.xp, ctx.target
        ctx.a = xp.sum(x1 * x1, axis=-1) + COSINE_EPSILON
        ctx.b = xp.sum(x2 * x2, axis=-1) + COSINE_EPSILON
        ctx.root = xp.sqrt(ctx.a * ctx.b)
        ctx.cos = xp.sum(x1 * x2, axis=-1) / ctx.root  # c = <x1, x2> / sqrt(ab)
        per_sample = xp.where(y > 0, 1 - ctx.cos, xp.maximum(ctx.cos - self.margin, 0))
        return self._reduce(per_sample)

    def _vjp(self, g: Any, ctx: Context) -> Tuple[Any, Any]:
        xp, (x1, x2), y, cos = ctx.xp, ctx.inputs, ctx.target, ctx.cos
        upstream = self._reduction_grad(g, ctx, tuple(cos.shape))
        d_cos = xp.where(y > 0, -upstream, xp.where(cos - self.margin >= 0, upstream, xp.zeros_like(upstream)))
        d_cos, root, c = d_cos[..., None], ctx.root[..., None], cos[..., None]
        return d_cos * (x2 / root - c * x1 / ctx.a[..., None]), d_cos * (x1 / root - c * x2 / ctx.b[..., None])


class MarginRankingLoss(_PairLoss):
    r"""Margin ranking loss, as ``torch.nn.MarginRankingLoss(margin=0.0, size_average=None, reduce=None,
    reduction='mean')``.

    Inputs :math:`x_1, x_2` and a target :math:`y \in \{1, -1\}`, all of one
    shape (each element a sample); :math:`y = 1` says :math:`x_1` should rank
    above :math:`x_2`:

    .. math::
        \ell = \max\big(0,\ z\big), \quad z = -y\,(x_1 - x_2) + \text{margin}, \qquad
        \frac{\partial \ell}{\partial x_1} = -y\,[z \ge 0], \quad \frac{\partial \ell}{\partial x_2} = y\,[z \ge 0].
    """

    def _check_predictions(self, parts: Tuple[Any, ...]) -> None:
        self._same_shapes(parts)

    def _prepare_target(self, target: Any, prediction: Any) -> Any:
        return _sign_target(target, prediction[0], tuple(prediction[0].shape), "MarginRankingLoss")

    def _forward(self, x1: Any, x2: Any, ctx: Context) -> Any:
        z = -ctx.target * (x1 - x2) + self.margin
        ctx.active = z >= 0
        return self._reduce(ctx.xp.maximum(z, 0))

    def _vjp(self, g: Any, ctx: Context) -> Tuple[Any, Any]:
        xp, y = ctx.xp, ctx.target
        upstream = self._reduction_grad(g, ctx, tuple(y.shape))
        dx1 = xp.where(ctx.active, -y * upstream, xp.zeros_like(y))  # -y [z >= 0]
        return dx1, -dx1


class TripletMarginLoss(SeveralPredictionsLoss):
    r"""Triplet margin loss, as ``torch.nn.TripletMarginLoss(margin=1.0, p=2.0, eps=1e-06, swap=False,
    size_average=None, reduce=None, reduction='mean')``.

    An anchor :math:`a`, a positive :math:`p` and a negative :math:`n`, each
    ``(N, D)`` (or ``(D,)``), and no target.  With torch's pairwise distance
    :math:`d(u, v) = \lVert u - v + \epsilon\rVert_p` (``eps`` added to the
    difference):

    .. math::
        \ell = \max\big(0,\ \text{margin} + d(a, p) - d_-\big), \qquad
        d_- = d(a, n), \text{ or } \min\big(d(a, n),\ d(p, n)\big) \text{ with swap},

    and for :math:`v = u - w + \epsilon`, :math:`\partial d / \partial u =
    -\partial d / \partial w = \operatorname{sign}(v)\,|v|^{p-1} / \lVert v\rVert_p^{p-1}`
    (:math:`v / \lVert v\rVert_2` for :math:`p = 2`, :math:`\operatorname{sign}(v)`
    for :math:`p = 1`; 0 at :math:`\lVert v\rVert_p = 0`, and at :math:`v_i = 0`
    for :math:`p < 1`, as torch).  The hinge's gradient flows where its
    argument is :math:`\ge 0`; a tie of the swap's minimum splits it in halves,
    as torch's ``minimum``.  ``margin`` must be positive, ``p`` positive and finite.
    """

    prediction_names = ("anchor", "positive", "negative")
    torch_order = ("anchor", "positive", "negative")
    has_target = False

    def __init__(self, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6, swap: bool = False,
                 size_average: Optional[bool] = None, reduce: Optional[bool] = None, reduction: str = "mean") -> None:
        super().__init__(resolve_reduction(reduction, size_average, reduce))
        self.margin = real_number(margin, "margin", "TripletMarginLoss", low=0.0, above=True)
        self.p = real_number(p, "p", "TripletMarginLoss", low=0.0, above=True)
        self.eps = real_number(eps, "eps", "TripletMarginLoss")
        self.swap = flag(swap, "swap", "TripletMarginLoss")

    def _check_predictions(self, parts: Tuple[Any, ...]) -> None:
        self._same_shapes(parts, ndims=(1, 2))

    def _distance(self, u: Any, w: Any, ctx: Context) -> Tuple[Any, Any]:
        """``(d, v)``: the distance :math:`\\lVert v\\rVert_p` of ``v = u - w + eps`` over the last axis, and ``v``."""
        xp, p = ctx.xp, self.p
        v = u - w + self.eps
        if p == 2:
            return xp.sqrt(xp.sum(v * v, axis=-1)), v
        if p == 1:
            return xp.sum(xp.abs(v), axis=-1), v
        return xp.sum(xp.abs(v) ** p, axis=-1) ** (1 / p), v

    def _distance_grad(self, v: Any, d: Any, ctx: Context) -> Any:
        r""":math:`\partial \lVert v\rVert_p / \partial v`, with torch's zeros where the norm (or, for p < 1, the
        entry) is 0."""
        xp, p = ctx.xp, self.p
        norm = d[..., None]
        zero = xp.zeros_like(v)
        if p == 1:
            return xp.sign(v)
        if p == 2:
            return xp.where(norm == 0, zero, v / xp.where(norm == 0, xp.ones_like(norm), norm))
        abs_v = xp.abs(v)
        scaled = xp.sign(v) * xp.where(abs_v == 0, zero, xp.where(abs_v == 0, xp.ones_like(v), abs_v) ** (p - 1))
        if p < 1:
            return scaled * norm ** (1 - p)
        return xp.where(norm == 0, zero, scaled / xp.where(norm == 0, xp.ones_like(norm), norm) ** (p - 1))

    def _forward(self, anchor: Any, positive: Any, negative: Any, ctx: Context) -> Any:
        xp = ctx.xp
        ctx.d_ap, ctx.v_ap = self._distance(anchor, positive, ctx)
        ctx.d_an, ctx.v_an = self._distance(anchor, negative, ctx)
        d_neg = ctx.d_an
        if self.swap:
            ctx.d_pn, ctx.v_pn = self._distance(positive, negative, ctx)
            d_neg = xp.minimum(ctx.d_an, ctx.d_pn)
        z = self.margin + ctx.d_ap - d_neg
        ctx.active = z >= 0
        return self._reduce(xp.maximum(z, 0))

    def _vjp(self, g: Any, ctx: Context) -> Tuple[Any, Any, Any]:
        xp = ctx.xp
        upstream = self._reduction_grad(g, ctx, tuple(ctx.d_ap.shape))
        dz = xp.where(ctx.active, upstream, xp.zeros_like(ctx.d_ap))  # d hinge / dz
        to_ap = dz[..., None] * self._distance_grad(ctx.v_ap, ctx.d_ap, ctx)
        to_an = dz
        if self.swap:  # minimum(d_an, d_pn): the smaller one takes it, a tie halves it between the two
            half = 0.5 * dz
            to_an = xp.where(ctx.d_an < ctx.d_pn, dz, xp.where(ctx.d_an == ctx.d_pn, half, xp.zeros_like(dz)))
            to_pn = xp.where(ctx.d_pn < ctx.d_an, dz, xp.where(ctx.d_an == ctx.d_pn, half, xp.zeros_like(dz)))
            to_pn = to_pn[..., None] * self._distance_grad(ctx.v_pn, ctx.d_pn, ctx)
        to_an = to_an[..., None] * self._distance_grad(ctx.v_an, ctx.d_an, ctx)
        d_anchor, d_positive, d_negative = to_ap - to_an, -to_ap, to_an  # d_an enters with a minus sign
        if self.swap:
            d_positive, d_negative = d_positive - to_pn, d_negative + to_pn
        return d_anchor, d_positive, d_negative

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", margin={self.margin:g}, p={self.p:g}, eps={self.eps:g}"
                + (", swap=True" if self.swap else ""))

