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
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ..backend import as_backend_array, namespace_of, to_numpy
from ..context import Context
from ..engine import softmax as blocked
from ..nodes.course import label_set_nll, label_set_nll_grad
from ..nodes.softmax import NormalizedSoftMax, log_softmax, softmax, softmax_with_log_normalizer
from .base import Loss

__all__ = ["CrossEntropyLoss", "NLLLoss", "SoftMaxLoss"]


def _class_axis(x: Any) -> int:
    return 0 if x.ndim == 1 else 1


def _to_last(a: Any, ndim: int) -> Any:
    """Move the class axis (1) of an ``(N, C, d1, ...)`` array last; a view, and a no-op for 1-D and 2-D."""
    return namespace_of(a).moveaxis(a, 1, -1) if ndim > 2 else a


def _from_last(a: Any, ndim: int) -> Any:
    return namespace_of(a).moveaxis(a, -1, 1) if ndim > 2 else a


def _one_hot(t: Any, n_classes: int) -> Any:
    """The one-hot rows :math:`e_t` of class indices ``t`` as a mask, shape ``t.shape + (C,)``."""
    return t[..., None] == namespace_of(t).arange(n_classes, dtype=t.dtype)


def _at_target(values: Any, t: Any, n_classes: int, ctx: Context) -> Any:
    """``values e_t``: zero but for ``values`` ``(..., 1)`` at each row's class ``t`` ``(...)``, ``(..., C)``."""
    if ctx.fast:  # written by index into zeros, without the one-hot mask
        return blocked.scaled_one_hot(t, values, tuple(t.shape) + (n_classes,), values.dtype)
    return ctx.xp.where(_one_hot(t, n_classes), values, ctx.xp.zeros_like(values))


def _kind(t: Any) -> str:
    """The kind of ``t``'s dtype as NumPy spells it (``'i'`` for every integer type), in any namespace."""
    if isinstance(t, np.ndarray):
        return "i" if t.dtype.kind == "u" else t.dtype.kind
    xp = namespace_of(t)
    kinds = (("b", "bool"), ("i", "integral"), ("f", "real floating"))
    return next((kind for kind, name in kinds if xp.isdtype(t.dtype, name)), "?")


def _label_sets(t: Any) -> bool:
    """Whether a float target of the scores' shape holds label sets: every entry 0 or 1 (one-hot rows included)."""
    xp = namespace_of(t)
    return math.prod(t.shape) > 0 and bool(xp.all((t == 0) | (t == 1)))


def _probability_tolerance(xp: Any, dtype: Any) -> float:
    """How far a probability row may sum from 1: loose enough for rows normalised in low precision."""
    return max(1e-3, float(np.sqrt(xp.finfo(dtype).eps)))


class _ClassificationLoss(Loss):
    """Shared machinery: the class axis, target validation, the per-sample upstream gradient."""

    _accepts_probabilities = True
    _has_classes = True

    def _check_input(self, x: Any) -> None:
        if x.ndim == 0 or x.shape[_class_axis(x)] == 0:
            raise ValueError(
                f"{type(self).__name__} expects scores of shape (C,), (N, C) or (N, C, d1, ...) with C >= 1 "
                f"classes, got shape {tuple(x.shape)}"
            )

    def _prepare_target(self, target: Any, prediction: Any) -> Any:
        """The target checked, in the prediction's namespace: int64 class indices, or probability rows."""
        name = type(self).__name__
        if namespace_of(target) is np:
            try:
                t = np.asarray(target)
            except ValueError as error:  # ragged nested lists
                raise ValueError(f"{name}: target must be a rectangular array: {error}") from None
        else:
            t = target
        axis = _class_axis(prediction)
        shape, n_classes = tuple(prediction.shape), prediction.shape[axis]
        index_shape, t_shape = shape[:axis] + shape[axis + 1:], tuple(t.shape)
        kind = _kind(t)
        if kind == "i" and t_shape == index_shape:
            return self._check_indices(as_backend_array(t, namespace_of(prediction)), n_classes, shape)
        probability_hint = (
            f", or probability rows: a float array of the scores' shape {shape}"
            if self._accepts_probabilities
            else ""
        )
        if kind == "i":
            if t_shape == shape:
                raise TypeError(
                    f"{name}: an integer target of the scores' shape {shape} is ambiguous; class "
                    f"indices have shape {index_shape}"
                    + (" and one-hot/probability rows must have a float dtype" if self._accepts_probabilities else "")
                )
            raise ValueError(
                f"{name}: class-index target must have shape {index_shape} for scores of shape "
                f"{shape}, got {t_shape}{probability_hint}"
            )
        if kind == "b":
            raise TypeError(
                f"{name}: target has dtype bool; class indices need an integer dtype{probability_hint}"
            )
        if kind != "f":
            raise TypeError(f"{name}: target must hold integer class indices or floats, got dtype {t.dtype}")
        if not self._accepts_probabilities:
            raise TypeError(
                f"{name} takes class indices of shape {index_shape} with an integer dtype, got dtype {t.dtype} "
                f"and shape {t_shape}; cast class indices with target.astype(int)"
            )
        if t_shape == shape:
            return self._check_probabilities(as_backend_array(t, namespace_of(prediction)), prediction, axis)
        if t_shape == index_shape:
            raise TypeError(
                f"{name}: class-index target needs an integer dtype, got dtype {t.dtype} (cast with "
                f"target.astype(int)); probability rows must have the scores' shape {shape}"
            )
        raise ValueError(
            f"{name}: target must be class indices of shape {index_shape} (integer dtype) or probability rows "
            f"of the scores' shape {shape} (float dtype), got shape {t_shape} with dtype {t.dtype}"
        )

    def _check_indices(self, t: Any, n_classes: int, shape: tuple) -> Any:
        xp = namespace_of(t)
        if math.prod(t.shape) and (bool(xp.min(t) < 0) or bool(xp.max(t) >= n_classes)):
            host = to_numpy(t)
            bad = host[(host < 0) | (host >= n_classes)].flat[0]
            raise ValueError(
                f"{type(self).__name__}: target holds class index {int(bad)}, outside the range "
                f"[0, {n_classes}) of the C = {n_classes} classes of scores of shape {shape}"
            )
        return xp.astype(t, xp.int64, copy=False)

    def _check_probabilities(self, t: Any, prediction: Any, axis: int) -> Any:
        name, xp = type(self).__name__, namespace_of(t)
        if math.prod(t.shape) == 0:
            return xp.astype(t, prediction.dtype, copy=False)
        low, high = xp.min(t), xp.max(t)
        if not (bool(low >= 0) and bool(high <= 1)):  # also catches NaN
            raise ValueError(
                f"{name}: probability targets must lie in [0, 1], got values in [{to_numpy(low)}, {to_numpy(high)}]"
            )
        sums = xp.reshape(xp.sum(t, axis=axis), (-1,))
        worst = int(xp.argmax(xp.abs(sums - 1)))
        if not float(xp.abs(sums[worst] - 1)) <= _probability_tolerance(xp, t.dtype):
            raise ValueError(
                f"{name}: probability targets must sum to 1 over the class axis {axis}, got a row summing to "
                f"{float(sums[worst]):.6g} (for class indices, pass an integer array of shape "
                f"{tuple(prediction.shape[:axis] + prediction.shape[axis + 1:])})"
            )
        return xp.astype(t, prediction.dtype, copy=False)

    def predict_classes(self, output: Any) -> Any:
        """Predicted class indices: the argmax over the class axis (the last axis of ``(N, C)`` scores)."""
        x = self._prepare_input(output)
        return namespace_of(x).argmax(x, axis=_class_axis(x))

    def _sample_weights(self, g: Any, ctx: Context) -> Any:
        """dL/d(per-sample loss) with a trailing class axis of length 1, shape ``per_sample + (1,)``."""
        return self._reduction_grad(g, ctx, ctx.per_sample_shape)[..., None]


class CrossEntropyLoss(_ClassificationLoss):
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

    The log-probabilities come from log-sum-exp (the row maximum is
    subtracted first), so logits like ``[1000, -1000]`` give a finite loss
    (2000 for target 1) and gradient.  The forward pass keeps the softmax
    probabilities, taken from the same exponentials, so ``backward`` is the
    fused :math:`O(N C)` formula above: no softmax Jacobian is ever built.

    Targets: integer class indices of shape ``(N,)`` (``()`` for ``(C,)``
    logits), or float probability rows of the logits' shape, in
    :math:`[0, 1]` and summing to 1 over the class axis.
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
            raise TypeError(f"label_smoothing must be a real number in [0, 1], got {label_smoothing!r}")
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing!r}")
        super().__init__(reduction)
        self.label_smoothing = float(label_smoothing)

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp, z, t, eps = ctx.xp, _to_last(x, x.ndim), ctx.target, self.label_smoothing
        if _kind(t) == "f":
            log_p, ctx.p = (blocked.log_softmax if ctx.fast else log_softmax)(z, return_softmax=True)
            q = _to_last(t, x.ndim)
            if eps:
                q = q * (1 - eps) + eps / z.shape[-1]
            ctx.q, ctx.q_sum = q, xp.sum(q, axis=-1)
            per_sample = -xp.vecdot(q, log_p)  # -sum_c q_c log p_c
        else:  # -log p_t = log sum_k e^(x_k - m) - (x_t - m): the array of log p is never formed
            ctx.p, m, log_total, *mean_shift = (blocked.softmax_with_log_normalizer if ctx.fast else
                                                softmax_with_log_normalizer)(z, shifted_mean=bool(eps))
            per_sample = log_total - (xp.take_along_axis(z, t[..., None], axis=-1) - m)
            if eps:  # minus the mean of log p over the classes, mean(x - m) - log sum_k e^(x_k - m)
                per_sample = (1 - eps) * per_sample - eps * (mean_shift[0] - log_total)
            per_sample = per_sample[..., 0]
        ctx.per_sample_shape = tuple(per_sample.shape)
        return self._reduce(per_sample)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        w, t, eps = self._sample_weights(g, ctx), ctx.target, self.label_smoothing
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

    def probabilities(self, prediction: Any) -> Any:
        """``softmax`` of the logits over the class axis."""
        x = self._prepare_input(prediction)
        return _from_last(softmax(_to_last(x, x.ndim)), x.ndim)

    def extra_repr(self) -> str:
        extra = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return super().extra_repr() + extra


class NLLLoss(_ClassificationLoss):
    r"""Negative log-likelihood of log-probabilities, as ``torch.nn.NLLLoss``.

    The input holds log-probabilities :math:`x_c = \log p_c` (from
    :class:`~nn_from_scratch.nodes.LogSoftMax`); on one sample, :math:`x` of
    shape ``(C,)`` and a class index :math:`t`,

    .. math::
        \ell = -x_t, \qquad \frac{\partial \ell}{\partial x} = -e_t .

    ``LogSoftMax`` followed by ``NLLLoss`` equals :class:`CrossEntropyLoss`,
    which fuses the two and is faster.  Targets are integer class indices
    only; the input is not checked to be log-probabilities (as in PyTorch).
    """

    _accepts_probabilities = False

    def probabilities(self, prediction: Any) -> Any:
        """``exp`` of the log-probabilities."""
        x = self._prepare_input(prediction)
        return namespace_of(x).exp(x)

    def _forward(self, x: Any, ctx: Context) -> Any:
        z = _to_last(x, x.ndim)
        per_sample = -ctx.xp.take_along_axis(z, ctx.target[..., None], axis=-1)[..., 0]  # -x_t
        ctx.per_sample_shape = tuple(per_sample.shape)
        return self._reduce(per_sample)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        dz = _at_target(-self._sample_weights(g, ctx), ctx.target, ctx.x.shape[_class_axis(ctx.x)], ctx)  # -w e_t
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

    **Label sets** (the course's multi-hot labels): a float target whose
    entries are all 0 or 1 marks, per sample, the classes that count as
    right, and the loss is minus the log of their total probability
    (:func:`~nn_from_scratch.nodes.course.label_set_nll`):

    .. math::
        \ell = -\log\langle l, y\rangle, \qquad
        \frac{\partial \ell}{\partial x} = J_y^\top\Big(-\frac{l}{\langle l, y\rangle}\Big).

    A one-hot row gives :math:`-\log y_t` either way; every row needs a 1.

    Why :class:`CrossEntropyLoss` is usually the better choice: dividing by
    the largest magnitude bounds the scaled logits to :math:`[-1, 1]`, so the
    largest probability the model can ever give is
    :math:`e / (e + (C-1)e^{-1}) = 1 / (1 + (C-1)e^{-2})` (0.45 for
    :math:`C = 10`), and the loss never falls below :math:`-\log` of that.  The
    model cannot become confident, the gradient does not vanish on correctly
    classified samples, and the scale invariance :math:`y(cx) = y(x)` for
    :math:`c > 0` leaves the logits' magnitude undetermined.  It is kept to
    reproduce the course module; use it only for that.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self._normalized = NormalizedSoftMax()

    def probabilities(self, prediction: Any) -> Any:
        """``NormalizedSoftMax`` of the scores over the class axis (at most :math:`1/(1 + (C-1)e^{-2})`)."""
        x = self._prepare_input(prediction)
        return _from_last(self._normalized.evaluate(_to_last(x, x.ndim)), x.ndim)

    def _check_probabilities(self, t: Any, prediction: Any, axis: int) -> Any:
        """Probability rows, or label sets: rows of 0s and 1s, each with a 1."""
        if not _label_sets(t):
            return super()._check_probabilities(t, prediction, axis)
        xp = namespace_of(t)
        if bool(xp.any(xp.sum(t, axis=axis) == 0)):
            raise ValueError("SoftMaxLoss: a target row of 0s and 1s (a label set) marks no class, so -log(l·y) would "
                             "be infinite; every row needs a 1")
        return xp.astype(t, prediction.dtype, copy=False)

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
