r"""Classification losses: CrossEntropyLoss, NLLLoss and the course's SoftMaxLoss.

All three take scores of shape ``(C,)`` (one sample), ``(N, C)`` or
``(N, C, d1, ...)`` (a class score per position, as in PyTorch): the class
axis is axis 0 for a vector and axis 1 otherwise.  Targets are either

* class indices of the scores' shape without the class axis (``()``,
  ``(N,)`` or ``(N, d1, ...)``), of any integer dtype, each in
  :math:`[0, C)`; or
* (CrossEntropyLoss and SoftMaxLoss only) probability rows: a float array
  of the scores' own shape whose entries lie in :math:`[0, 1]` and sum to 1
  over the class axis (one-hot rows included); for SoftMaxLoss also label
  sets, rows of 0s and 1s (multi-hot), each with a 1.

Booleans and float arrays of the index shape are refused with ``TypeError``
rather than silently read as indices.  The reductions follow PyTorch: 'mean'
divides by the number of samples (positions), 'sum' adds, 'none' returns one
loss per sample.  Targets may come as NumPy arrays (or lists) or in the
prediction's array namespace; they are checked and converted to the latter.

The losses state their formulas with the prediction's namespace (a class
index picks its entry with ``take_along_axis`` and is a one-hot mask in a
gradient).  With the fast engine on and NumPy arrays the softmax statistics
come in row blocks and the one target entry of each row is written by index
(:mod:`nn_from_scratch.engine.softmax`); both paths give the same bits.
The class axis, the target checks and torch's class weights are
:mod:`.class_targets`'s.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Tuple

from ..backend import namespace_of
from ..context import Context
from ..engine import softmax as blocked
from ..nodes.course import label_set_nll, label_set_nll_grad
from ..nodes.softmax import NormalizedSoftMax, log_softmax, softmax, softmax_with_log_normalizer
from .class_targets import (_at_target, _class_axis, _ClassificationLoss, _from_last, _kind, _to_last,
                            _WeightedClassificationLoss)

__all__ = ["CrossEntropyLoss", "NLLLoss", "SoftMaxLoss"]


def _label_sets(t: Any) -> bool:
    """Whether a float target of the scores' shape holds label sets: every entry 0 or 1 (one-hot rows included)."""
    xp = namespace_of(t)
    return math.prod(t.shape) > 0 and bool(xp.all((t == 0) | (t == 1)))


class CrossEntropyLoss(_WeightedClassificationLoss):
    r"""Cross-entropy of raw scores (logits), as ``torch.nn.CrossEntropyLoss``.

    On one sample, logits :math:`x` of shape ``(C,)`` and a target
    distribution :math:`q` of shape ``(C,)``, with :math:`p = \mathrm{softmax}(x)`
    and :math:`m = \max_k x_k`, the loss :math:`\ell` is a number:

    .. math::
        \ell = -\sum_c q_c \log p_c
             = -\sum_c q_c \Big(x_c - m - \log\sum_k e^{x_k - m}\Big), \qquad
        \frac{\partial \ell}{\partial x_c} = p_c \sum_k q_k - q_c = p_c - q_c .

    For a class index :math:`t`, :math:`q` is the one-hot row :math:`e_t`,
    so :math:`\ell = -\log p_t = \log\sum_k e^{x_k - m} - (x_t - m)` (the
    array of log-probabilities is never formed) and
    :math:`\partial\ell/\partial x = p - e_t`.
    With label smoothing :math:`\varepsilon` the target becomes
    :math:`q' = (1-\varepsilon) q + \varepsilon / C` (PyTorch's definition,
    for both kinds of target).  'mean' divides by the number of samples
    :math:`N` (times :math:`d_1 \cdots` for extra axes), 'sum' adds.

    **Class weights** :math:`w` (``weight``, one per class) weigh each
    class's term, as torch: :math:`q` becomes :math:`w \odot q`, so for a
    class index :math:`\ell = -(1-\varepsilon)\,w_t \log p_t -
    \frac{\varepsilon}{C}\sum_c w_c \log p_c` and, for any target,
    :math:`\partial\ell/\partial x = p \sum_k q_k - q` with the weighted
    :math:`q`.  With class indices 'mean' divides by the summed weights of
    the targets :math:`\sum_n w_{t_n}`; with probability rows by :math:`N`
    (torch's two rules).  A target equal to ``ignore_index`` (class indices
    only; -100 by default) gives a loss and a gradient of 0 and is not
    counted in the mean.

    The log-probabilities come from log-sum-exp (the row maximum is
    subtracted first), so logits like ``[1000, -1000]`` give a finite loss
    (2000 for target 1) and gradient.  The forward pass keeps the softmax
    probabilities, taken from the same exponentials, so ``backward`` is the
    fused :math:`O(N C)` formula above: no softmax Jacobian is ever built.

    Targets: integer class indices of shape ``(N,)`` (``()`` for ``(C,)``
    logits), or float probability rows of the logits' shape, in
    :math:`[0, 1]` and summing to 1 over the class axis.  The arguments are
    torch's, in its order; a reduction name in the first place is read as
    ``reduction`` (this library's earlier order), and the deprecated
    ``size_average``/``reduce`` decide the reduction as in torch.
    ``state_dict()`` holds ``weight`` when set, as torch's.
    """

    def __init__(self, weight: Optional[Any] = None, size_average: Optional[bool] = None, ignore_index: int = -100,
                 reduce: Optional[bool] = None, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
            raise TypeError(f"label_smoothing must be a real number in [0, 1], got {label_smoothing!r}")
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing!r}")
        super().__init__(weight, size_average, ignore_index, reduce, reduction)
        self.label_smoothing = float(label_smoothing)

    def _prepare_target(self, target: Any, prediction: Any) -> Any:
        t = super()._prepare_target(target, prediction)
        if _kind(t) == "f" and self.ignore_index != -100:
            raise ValueError(f"CrossEntropyLoss: ignore_index={self.ignore_index} applies to class-index targets, not "
                             "to probability rows (torch refuses it for them too)")
        return t

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp, z, t, eps = ctx.xp, _to_last(x, x.ndim), ctx.target, self.label_smoothing
        ctx.counted = None
        if _kind(t) == "f":
            log_p, ctx.p = (blocked.log_softmax if ctx.fast else log_softmax)(z, return_softmax=True)
            q = _to_last(t, x.ndim)
            if eps:
                q = q * (1 - eps) + eps / z.shape[-1]
            if self.weight is not None:
                q = q * self._weight("weight", x)  # w ⊙ q
            ctx.q, ctx.q_sum = q, xp.sum(q, axis=-1)
            per_sample = -xp.vecdot(q, log_p)  # -sum_c q_c log p_c
        elif (counted := self._counted(ctx)) is not None:
            return self._weighted_forward(z, ctx, counted)
        else:  # -log p_t = log sum_k e^(x_k - m) - (x_t - m): the array of log p is never formed
            ctx.p, m, log_total, *mean_shift = (blocked.softmax_with_log_normalizer if ctx.fast else
                                                softmax_with_log_normalizer)(z, shifted_mean=bool(eps))
            per_sample = log_total - (xp.take_along_axis(z, t[..., None], axis=-1) - m)
            if eps:  # minus the mean of log p over the classes, mean(x - m) - log sum_k e^(x_k - m)
                per_sample = (1 - eps) * per_sample - eps * (mean_shift[0] - log_total)
            per_sample = per_sample[..., 0]
        ctx.per_sample_shape = tuple(per_sample.shape)
        return self._reduce(per_sample)

    def _weighted_forward(self, z: Any, ctx: Context, counted: Tuple[Any, Any, Any]) -> Any:
        r""":math:`\ell = (1-\varepsilon)\,s\,(-\log p_t) + \frac{\varepsilon}{C}\sum_c w_c (-\log p_c)` for a
        counted sample, 0 for an ignored one; the mean divides by :math:`\sum_n s_n`."""
        xp, eps = ctx.xp, self.label_smoothing
        ctx.counted, (mask, t, s) = counted, counted
        ctx.p, m, log_total = (blocked.softmax_with_log_normalizer if ctx.fast else softmax_with_log_normalizer)(z)
        per_sample = s[..., None] * (log_total - (xp.take_along_axis(z, t[..., None], axis=-1) - m))  # s (-log p_t)
        if eps:  # sum_c w_c (-log p_c) = (sum_c w_c) log_total - <w, x - m>
            w = self._weight("weight", z)
            smooth = (log_total * z.shape[-1] - xp.sum(z - m, axis=-1)[..., None] if w is None
                      else log_total * xp.sum(w) - xp.vecdot(z - m, w)[..., None])
            per_sample = (1 - eps) * per_sample + (eps / z.shape[-1]) * smooth
        per_sample = xp.where(mask, per_sample[..., 0], xp.zeros_like(s))  # an ignored sample adds 0, even for NaN
        ctx.per_sample_shape, ctx.denominator = tuple(per_sample.shape), xp.sum(s)
        return self._reduce(per_sample, ctx.denominator)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        t, eps = ctx.target, self.label_smoothing
        if ctx.counted is not None:
            return _from_last(self._weighted_vjp(g, ctx), ctx.x.ndim)
        w = self._sample_weights(g, ctx)
        if _kind(t) == "f":
            dz = (ctx.p * ctx.q_sum[..., None] - ctx.q) * w  # (p sum_k q_k - q) w
        elif ctx.fast:  # the same terms, the target entry of each row corrected by index
            dz = blocked.cross_entropy_grad(ctx.p, t, w, eps)
        else:  # (p - q) w for q = (1 - eps) e_t + eps / C, term by term: p w - (eps / C) w - (1 - eps) w e_t
            dz = ctx.p * w
            if eps:
                dz -= w * (eps / dz.shape[-1])
            dz -= _at_target(w * (1 - eps), t, dz.shape[-1], ctx)
        return _from_last(dz, ctx.x.ndim)

    def _weighted_vjp(self, g: Any, ctx: Context) -> Any:
        r""":math:`\partial\ell/\partial x = p\,\big((1-\varepsilon)s + \tfrac{\varepsilon}{C}\textstyle\sum_c w_c\big)
        - (1-\varepsilon)\,s\,e_t - \tfrac{\varepsilon}{C} w` per counted sample, 0 for an ignored one."""
        xp, eps, (mask, t, s), p = ctx.xp, self.label_smoothing, ctx.counted, ctx.p
        upstream = self._reduction_grad(g, ctx, ctx.per_sample_shape, ctx.denominator)
        upstream = xp.where(mask, upstream, xp.zeros_like(s))[..., None]  # nothing flows to an ignored sample
        a = upstream * ((1 - eps) * s[..., None])
        dz = p * a - _at_target(a, t, p.shape[-1], ctx)  # (1 - eps) s (p - e_t)
        if eps:
            b, w = upstream * (eps / p.shape[-1]), self._weight("weight", p)
            dz = dz + (p * (b * p.shape[-1]) - b if w is None else p * (b * xp.sum(w)) - b * w)
        return dz

    def probabilities(self, prediction: Any) -> Any:
        """``softmax`` of the logits over the class axis."""
        x = self._prepare_input(prediction)
        return _from_last(softmax(_to_last(x, x.ndim)), x.ndim)

    def extra_repr(self) -> str:
        extra = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return super().extra_repr() + extra


class NLLLoss(_WeightedClassificationLoss):
    r"""Negative log-likelihood of log-probabilities, as ``torch.nn.NLLLoss``.

    The input holds log-probabilities :math:`x_c = \log p_c` (from
    :class:`~nn_from_scratch.nodes.LogSoftMax`); on one sample, :math:`x` of
    shape ``(C,)`` and a class index :math:`t`,

    .. math::
        \ell = -w_t\,x_t, \qquad \frac{\partial \ell}{\partial x} = -w_t\,e_t ,

    with the class weights :math:`w` (``weight``; 1 each by default).  A
    target equal to ``ignore_index`` (-100 by default) gives 0 and is not
    counted; 'mean' divides by the summed weights of the counted targets
    :math:`\sum_n w_{t_n}`, as torch.  ``LogSoftMax`` followed by
    ``NLLLoss`` equals :class:`CrossEntropyLoss`, which fuses the two and is
    faster.  Targets are integer class indices only; the input is not
    checked to be log-probabilities (as in PyTorch).  The arguments are
    torch's, in its order (see :class:`CrossEntropyLoss`).
    """

    _accepts_probabilities = False

    def __init__(self, weight: Optional[Any] = None, size_average: Optional[bool] = None, ignore_index: int = -100,
                 reduce: Optional[bool] = None, reduction: str = "mean") -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction)

    def probabilities(self, prediction: Any) -> Any:
        """``exp`` of the log-probabilities."""
        x = self._prepare_input(prediction)
        return namespace_of(x).exp(x)

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp, z = ctx.xp, _to_last(x, x.ndim)
        ctx.counted = self._counted(ctx)
        if ctx.counted is None:
            per_sample = -xp.take_along_axis(z, ctx.target[..., None], axis=-1)[..., 0]  # -x_t
            ctx.per_sample_shape = tuple(per_sample.shape)
            return self._reduce(per_sample)
        mask, t, s = ctx.counted
        per_sample = xp.where(mask, -s * xp.take_along_axis(z, t[..., None], axis=-1)[..., 0], xp.zeros_like(s))
        ctx.per_sample_shape, ctx.denominator = tuple(per_sample.shape), xp.sum(s)  # -w_t x_t, 0 where ignored
        return self._reduce(per_sample, ctx.denominator)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        classes = ctx.x.shape[_class_axis(ctx.x)]
        if ctx.counted is None:
            dz = _at_target(-self._sample_weights(g, ctx), ctx.target, classes, ctx)  # -w e_t
        else:
            xp, (mask, t, s) = ctx.xp, ctx.counted
            upstream = self._reduction_grad(g, ctx, ctx.per_sample_shape, ctx.denominator)
            dz = _at_target(xp.where(mask, -s * upstream, xp.zeros_like(s))[..., None], t, classes, ctx)  # -w_t e_t
        return _from_last(dz, ctx.x.ndim)


class SoftMaxLoss(_ClassificationLoss):
    r"""The course module's loss: cross-entropy on :class:`~nn_from_scratch.nodes.NormalizedSoftMax`.

    On one sample, scores :math:`x` of shape ``(C,)``, with
    :math:`y = \mathrm{NormalizedSoftMax}(x) = \mathrm{softmax}(x / a)`,
    :math:`a = |x_k|`, :math:`k = \arg\max_j |x_j|`, and a target
    distribution :math:`q` of shape ``(C,)`` (the one-hot :math:`e_t` for a
    class index :math:`t`):

    .. math::
        \ell = -\sum_c q_c \log y_c \quad (= -\log y_t), \qquad
        \frac{\partial \ell}{\partial x} = J_y^\top\Big(-\frac{q}{y}\Big),

    where :math:`J_y` is the Jacobian of NormalizedSoftMax.  The gradient is
    exactly that chain rule: :math:`-q/y` is passed through NormalizedSoftMax's
    own vector-Jacobian product, which includes the path through the scale
    :math:`a` (so it is *not* simply :math:`(y - q)/a`).

    Why :class:`CrossEntropyLoss` is usually the better choice: dividing by
    the largest magnitude bounds the scaled logits to :math:`[-1, 1]`, so the
    largest probability the model can ever give is
    :math:`e / (e + (C-1)e^{-1}) = 1 / (1 + (C-1)e^{-2})` (0.45 for
    :math:`C = 10`), and the loss never falls below :math:`-\log` of that.  The
    model cannot become confident, the gradient does not vanish on correctly
    classified samples, and the scale invariance :math:`y(cx) = y(x)` for
    :math:`c > 0` leaves the logits' magnitude undetermined.  It is kept to
    reproduce the course module; use it only for that.

    **Label sets** (the course's multi-hot labels): a float target whose
    entries are all 0 or 1 marks, per sample, the classes that count as
    right, and the loss is minus the log of their total probability
    (:func:`~nn_from_scratch.nodes.course.label_set_nll`):

    .. math::
        \ell = -\log\langle l, y\rangle, \qquad
        \frac{\partial \ell}{\partial x} = J_y^\top\Big(-\frac{l}{\langle l, y\rangle}\Big).

    A one-hot row gives :math:`-\log y_t` either way; every row needs a 1.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self._normalized = NormalizedSoftMax()

    def _check_probabilities(self, t: Any, prediction: Any, axis: int) -> Any:
        """Probability rows, or label sets: rows of 0s and 1s, each with a 1."""
        if not _label_sets(t):
            return super()._check_probabilities(t, prediction, axis)
        xp = namespace_of(t)
        if bool(xp.any(xp.sum(t, axis=axis) == 0)):
            raise ValueError("SoftMaxLoss: a target row of 0s and 1s (a label set) marks no class, so -log(l·y) would "
                             "be infinite; every row needs a 1")
        return xp.astype(t, prediction.dtype, copy=False)

    def probabilities(self, prediction: Any) -> Any:
        """``NormalizedSoftMax`` of the scores over the class axis (at most :math:`1/(1 + (C-1)e^{-2})`)."""
        x = self._prepare_input(prediction)
        return _from_last(self._normalized.evaluate(_to_last(x, x.ndim)), x.ndim)

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp, z = ctx.xp, _to_last(x, x.ndim)
        # the NormalizedSoftMax forward pass, kept whole for its backward; it leaves that node untouched
        ctx.inner = self._normalized.run(z, update_state=ctx.update_state)
        y = ctx.inner.y  # every entry >= e^-2 / C > 0, so the logarithm is safe
        t = ctx.target
        ctx.label_sets = _kind(t) == "f" and _label_sets(t)
        if ctx.label_sets:
            ctx.q = _to_last(t, x.ndim)
            per_sample, ctx.dot = label_set_nll(y, ctx.q)  # -log <l, y>
        elif _kind(t) == "f":
            ctx.q = _to_last(t, x.ndim)
            per_sample = -xp.vecdot(ctx.q, xp.log(y))  # -sum_c q_c log y_c
        else:
            ctx.y_t = xp.take_along_axis(y, t[..., None], axis=-1)
            per_sample = -xp.log(ctx.y_t[..., 0])  # -log y_t
        ctx.per_sample_shape = tuple(per_sample.shape)
        return self._reduce(per_sample)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        w, y, t = self._sample_weights(g, ctx), ctx.inner.y, ctx.target
        if ctx.label_sets:
            dl_dy = label_set_nll_grad(ctx.q, ctx.dot, w)  # dl/dy = -l / <l, y>
        elif _kind(t) == "f":
            dl_dy = -(ctx.q * w) / y  # dl/dy = -q / y
        else:
            dl_dy = _at_target(-w / ctx.y_t, t, y.shape[-1], ctx)  # dl/dy = -e_t / y_t
        return _from_last(self._normalized.vjp_from(ctx.inner, dl_dy), ctx.x.ndim)
