r"""Classification losses: CrossEntropyLoss, NLLLoss and the course's SoftMaxLoss.

All three take scores of shape ``(C,)`` (one sample), ``(N, C)`` or
``(N, C, d1, ...)`` (a class score per position, as in PyTorch): the class
axis is axis 0 for a vector and axis 1 otherwise.  Targets are either

* class indices of the scores' shape without the class axis (``()``,
  ``(N,)`` or ``(N, d1, ...)``), of any integer dtype, each in
  :math:`[0, C)`; or
* (CrossEntropyLoss and SoftMaxLoss only) probability rows: a float array
  of the scores' own shape whose entries lie in :math:`[0, 1]` and sum to 1
  over the class axis (one-hot rows included).

Booleans and float arrays of the index shape are refused with ``TypeError``
rather than silently read as indices.  The reductions follow PyTorch: 'mean'
divides by the number of samples (positions), 'sum' adds, 'none' returns one
loss per sample.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..context import Context
from ..nodes.softmax import NormalizedSoftMax, log_softmax, softmax, softmax_with_log_normalizer
from .base import Loss

__all__ = ["CrossEntropyLoss", "NLLLoss", "SoftMaxLoss"]


def _class_axis(x: np.ndarray) -> int:
    return 0 if x.ndim == 1 else 1


def _to_last(a: np.ndarray, ndim: int) -> np.ndarray:
    """Move the class axis (1) of an ``(N, C, d1, ...)`` array last; a view, and a no-op for 1-D and 2-D."""
    return np.moveaxis(a, 1, -1) if ndim > 2 else a


def _from_last(a: np.ndarray, ndim: int) -> np.ndarray:
    return np.moveaxis(a, -1, 1) if ndim > 2 else a


def _probability_tolerance(dtype: np.dtype) -> float:
    """How far a probability row may sum from 1: loose enough for rows normalised in low precision."""
    return max(1e-3, float(np.sqrt(np.finfo(dtype).eps)))


class _ClassificationLoss(Loss):
    """Shared machinery: the class axis, target validation, the per-sample upstream gradient."""

    _accepts_probabilities = True
    _has_classes = True

    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim == 0 or x.shape[_class_axis(x)] == 0:
            raise ValueError(
                f"{type(self).__name__} expects scores of shape (C,), (N, C) or (N, C, d1, ...) with C >= 1 "
                f"classes, got shape {x.shape}"
            )

    def _prepare_target(self, target: Any, prediction: np.ndarray) -> np.ndarray:
        name = type(self).__name__
        try:
            t = np.asarray(target)
        except ValueError as error:  # ragged nested lists
            raise ValueError(f"{name}: target must be a rectangular array: {error}") from None
        axis = _class_axis(prediction)
        n_classes = prediction.shape[axis]
        index_shape = prediction.shape[:axis] + prediction.shape[axis + 1:]
        kind = t.dtype.kind
        if kind in "iu" and t.shape == index_shape:
            return self._check_indices(t, n_classes, prediction.shape)
        probability_hint = (
            f", or probability rows: a float array of the scores' shape {prediction.shape}"
            if self._accepts_probabilities
            else ""
        )
        if kind in "iu":
            if t.shape == prediction.shape:
                raise TypeError(
                    f"{name}: an integer target of the scores' shape {prediction.shape} is ambiguous; class "
                    f"indices have shape {index_shape}"
                    + (" and one-hot/probability rows must have a float dtype" if self._accepts_probabilities else "")
                )
            raise ValueError(
                f"{name}: class-index target must have shape {index_shape} for scores of shape "
                f"{prediction.shape}, got {t.shape}{probability_hint}"
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
                f"and shape {t.shape}; cast class indices with target.astype(int)"
            )
        if t.shape == prediction.shape:
            return self._check_probabilities(t, prediction, axis)
        if t.shape == index_shape:
            raise TypeError(
                f"{name}: class-index target needs an integer dtype, got dtype {t.dtype} (cast with "
                f"target.astype(int)); probability rows must have the scores' shape {prediction.shape}"
            )
        raise ValueError(
            f"{name}: target must be class indices of shape {index_shape} (integer dtype) or probability rows "
            f"of the scores' shape {prediction.shape} (float dtype), got shape {t.shape} with dtype {t.dtype}"
        )

    def _check_indices(self, t: np.ndarray, n_classes: int, shape: tuple) -> np.ndarray:
        if t.size and (t.min() < 0 or t.max() >= n_classes):
            bad = t[(t < 0) | (t >= n_classes)].flat[0]
            raise ValueError(
                f"{type(self).__name__}: target holds class index {int(bad)}, outside the range [0, {n_classes}) "
                f"of the C = {n_classes} classes of scores of shape {shape}"
            )
        return t.astype(np.intp, copy=False)

    def _check_probabilities(self, t: np.ndarray, prediction: np.ndarray, axis: int) -> np.ndarray:
        name = type(self).__name__
        if t.size == 0:
            return t.astype(prediction.dtype, copy=False)
        low, high = t.min(), t.max()
        if not (low >= 0 and high <= 1):  # also catches NaN
            raise ValueError(
                f"{name}: probability targets must lie in [0, 1], got values in [{low}, {high}]"
            )
        error = np.abs(t.sum(axis=axis) - 1)
        worst = int(np.argmax(error))
        if not error.flat[worst] <= _probability_tolerance(t.dtype):
            raise ValueError(
                f"{name}: probability targets must sum to 1 over the class axis {axis}, got a row summing to "
                f"{float(t.sum(axis=axis).flat[worst]):.6g} (for class indices, pass an integer array of shape "
                f"{prediction.shape[:axis] + prediction.shape[axis + 1:]})"
            )
        return t.astype(prediction.dtype, copy=False)

    def predict_classes(self, output: Any) -> np.ndarray:
        """Predicted class indices: the argmax over the class axis (the last axis of ``(N, C)`` scores)."""
        x = self._prepare_input(output)
        return np.argmax(x, axis=_class_axis(x))

    def _sample_weights(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        """dL/d(per-sample loss) with a trailing class axis of length 1, shape ``per_sample + (1,)``."""
        return np.asarray(self._reduction_grad(g, ctx, ctx.per_sample_shape))[..., None]


class CrossEntropyLoss(_ClassificationLoss):
    r"""Cross-entropy of raw scores (logits), as ``torch.nn.CrossEntropyLoss``.

    With :math:`p = \mathrm{softmax}(x)` over the class axis and a target
    distribution :math:`q` per sample,

    .. math::
        \ell = -\sum_c q_c \log p_c
             = -\sum_c q_c \Big(x_c - \log\sum_k e^{x_k}\Big), \qquad
        \frac{\partial \ell}{\partial x_c} = p_c \sum_k q_k - q_c = p_c - q_c .

    For a class index :math:`t`, :math:`q` is the one-hot row :math:`e_t`,
    so :math:`\ell = -\log p_t` and :math:`\partial\ell/\partial x = p - e_t`.
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

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        z = _to_last(x, x.ndim)
        n_classes = z.shape[-1]
        eps = self.label_smoothing
        t = ctx.target
        if t.dtype.kind == "f":
            log_p, ctx.p = log_softmax(z, return_softmax=True)
            q = _to_last(t, x.ndim)
            if eps:
                q = q * (1 - eps) + eps / n_classes
            ctx.q, ctx.q_sum = q, q.sum(axis=-1)
            per_sample = -np.einsum("...c,...c->...", q, log_p)
        else:
            # -log p_t = log_total - (x_t - m): only the picked entries of log p are formed
            ctx.p, shift, log_total, *mean_shift = softmax_with_log_normalizer(z, shifted_mean=bool(eps))
            picked = np.take_along_axis(z, t[..., None], axis=-1) - shift
            per_sample = (log_total - picked)[..., 0]
            if eps:  # the mean of log p over the classes is mean(x - m) - log_total
                per_sample = (1 - eps) * per_sample - eps * (mean_shift[0] - log_total)[..., 0]
        ctx.per_sample_shape = per_sample.shape
        return self._reduce(per_sample)

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        w = self._sample_weights(g, ctx)
        t = ctx.target
        if t.dtype.kind == "f":
            dz = (ctx.p * ctx.q_sum[..., None] - ctx.q) * w
        else:
            eps = self.label_smoothing
            dz = ctx.p * w
            if eps:
                dz -= w * (eps / dz.shape[-1])
            index = t[..., None]
            np.put_along_axis(dz, index, np.take_along_axis(dz, index, axis=-1) - w * (1 - eps), axis=-1)
        return _from_last(dz, ctx.x.ndim)

    def probabilities(self, prediction: Any) -> np.ndarray:
        """``softmax`` of the logits over the class axis."""
        x = self._prepare_input(prediction)
        return _from_last(softmax(_to_last(x, x.ndim)), x.ndim)

    def extra_repr(self) -> str:
        extra = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return super().extra_repr() + extra


class NLLLoss(_ClassificationLoss):
    r"""Negative log-likelihood of log-probabilities, as ``torch.nn.NLLLoss``.

    The input holds log-probabilities :math:`x_c = \log p_c` (from
    :class:`~nn_from_scratch.nodes.LogSoftMax`); for a class index :math:`t`

    .. math::
        \ell = -x_t, \qquad \frac{\partial \ell}{\partial x_c} = -\delta_{ct}.

    ``LogSoftMax`` followed by ``NLLLoss`` equals :class:`CrossEntropyLoss`,
    which fuses the two and is faster.  Targets are integer class indices
    only; the input is not checked to be log-probabilities (as in PyTorch).
    """

    _accepts_probabilities = False

    def probabilities(self, prediction: Any) -> np.ndarray:
        """``exp`` of the log-probabilities."""
        return np.exp(self._prepare_input(prediction))

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        z = _to_last(x, x.ndim)
        per_sample = -np.take_along_axis(z, ctx.target[..., None], axis=-1)[..., 0]
        ctx.per_sample_shape = per_sample.shape
        return self._reduce(per_sample)

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        w = self._sample_weights(g, ctx)
        dz = np.zeros(_to_last(ctx.x, ctx.x.ndim).shape, dtype=ctx.x.dtype)
        np.put_along_axis(dz, ctx.target[..., None], -w, axis=-1)
        return _from_last(dz, ctx.x.ndim)


class SoftMaxLoss(_ClassificationLoss):
    r"""The course module's loss: cross-entropy on :class:`~nn_from_scratch.nodes.NormalizedSoftMax`.

    With :math:`y = \mathrm{NormalizedSoftMax}(x) = \mathrm{softmax}(x / a)`,
    :math:`a = |x_k|`, :math:`k = \arg\max_j |x_j|`, and a target
    distribution :math:`q` (the one-hot :math:`e_t` for a class index :math:`t`):

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
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self._normalized = NormalizedSoftMax()

    def probabilities(self, prediction: Any) -> np.ndarray:
        """``NormalizedSoftMax`` of the scores over the class axis (at most :math:`1/(1 + (C-1)e^{-2})`)."""
        x = self._prepare_input(prediction)
        return _from_last(self._normalized.evaluate(_to_last(x, x.ndim)), x.ndim)

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        z = _to_last(x, x.ndim)
        # the NormalizedSoftMax forward pass, kept whole for its backward; it leaves that node untouched
        ctx.inner = self._normalized.run(z, update_state=ctx.update_state)
        y = ctx.inner.y  # every entry >= e^-2 / C > 0, so the logarithm is safe
        t = ctx.target
        if t.dtype.kind == "f":
            ctx.q = _to_last(t, x.ndim)
            per_sample = -np.einsum("...c,...c->...", ctx.q, np.log(y))
        else:
            per_sample = -np.log(np.take_along_axis(y, t[..., None], axis=-1)[..., 0])
        ctx.per_sample_shape = per_sample.shape
        return self._reduce(per_sample)

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        w = self._sample_weights(g, ctx)
        y = ctx.inner.y
        t = ctx.target
        if t.dtype.kind == "f":
            dl_dy = -(ctx.q * w) / y
        else:
            index = t[..., None]
            dl_dy = np.zeros_like(y)
            np.put_along_axis(dl_dy, index, -w / np.take_along_axis(y, index, axis=-1), axis=-1)
        return _from_last(self._normalized.vjp_from(ctx.inner, dl_dy), ctx.x.ndim)
