r"""The course's forms in ``nodes``: input sizes, multi-hot label sets, and its two losses.

The course this library grew from (its labs 4 to 11; ``docs/course.md``)
built every node with an input size (``ReLU(5)``, ``SoftMax((2, 5))``,
``Vectorization((N, C, H, W))``) and imported its two losses from
``nodes``: ``SoftMaxLoss(n)`` and ``MSELoss(input_size)``.  This module
holds what ``nodes`` needs for those forms:

* :func:`course_sizes` and :func:`course_size`: a course input size checked,
  and as a node's ``input_shape``;
* :func:`label_set_nll` and :func:`label_set_nll_grad`: the loss of a label
  set (a multi-hot row :math:`l`) on probabilities :math:`y`,
  :math:`-\log\langle l, y\rangle`, shared with
  :class:`nn_from_scratch.losses.SoftMaxLoss`;
* :class:`SoftMaxLoss` and :class:`MSELoss`, the course's losses with the
  course's faces.  They are criteria (a prediction and labels in, one number
  out), not layers, so they stay out of ``nodes.__all__``: the library's own
  losses are :mod:`nn_from_scratch.losses`, with torch's faces.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from ..backend import namespace_of, to_numpy
from ..context import Context, as_float_array
from ..criterion import Criterion
from .softmax import NormalizedSoftMax

__all__ = ["CourseSizes", "MSELoss", "SoftMaxLoss", "course_size", "course_sizes", "label_set_nll",
           "label_set_nll_grad"]

Size = Union[int, Sequence[int]]


def course_sizes(size: Any, who: str, name: str = "the input size", max_axes: Optional[int] = None) -> Tuple[int, ...]:
    """A course size (an int, or a sequence of ints) as a tuple of positive ints, or a clear error naming ``who``."""
    items = (size,) if isinstance(size, (int, np.integer)) and not isinstance(size, (bool, np.bool_)) else size
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"{who}: {name} must be an int or a tuple of ints (the course's input size), got "
                        f"{size!r}") from None
    if not items or any(isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 1
                        for d in items):
        raise ValueError(f"{who}: {name} must be a positive int or a tuple of positive ints, got {size!r}")
    if max_axes is not None and len(items) > max_axes:
        raise ValueError(f"{who} takes a vector (n,) or rows (N, n), not an input size of {len(items)} axes: {size!r}")
    return tuple(int(d) for d in items)


def course_size(size: Any, who: str) -> Optional[Tuple[Optional[int], ...]]:
    """The course's input size as a node's ``input_shape``: None stays None, and of two or more axes the first,
    the batch, takes any size (the course's networks predict one image through layers sized for a batch)."""
    if size is None:
        return None
    sizes = course_sizes(size, who)
    return sizes if len(sizes) == 1 else (None,) + sizes[1:]


def label_set_nll(y: Any, labels: Any) -> Tuple[Any, Any]:
    r"""The loss of label sets: per row, :math:`\ell = -\log\langle l, y\rangle`, and :math:`\langle l, y\rangle`.

    ``y`` holds probabilities and ``labels`` the rows :math:`l` (a multi-hot
    row marks the classes that count as right: :math:`\langle l, y\rangle` is
    their total probability; a one-hot row gives :math:`-\log y_t`), both of
    shape ``(..., C)``.  Returns the losses ``(...)`` and the inner products
    ``(..., 1)`` for :func:`label_set_nll_grad`.
    """
    xp = namespace_of(y, labels)
    inner = xp.vecdot(labels, y)[..., None]  # <l, y>
    return -xp.log(inner[..., 0]), inner


def label_set_nll_grad(labels: Any, inner: Any, w: Any) -> Any:
    r""":math:`\partial\ell/\partial y = -l / \langle l, y\rangle`, times the upstream weights ``w`` ``(..., 1)``."""
    return -(labels * w) / inner


class CourseSizes:
    """The course's sizes of a node: ``_input_dim`` and ``_output_dim`` (tuples), read as ``n_input``, ``n_output``."""

    _input_dim: Tuple[int, ...]
    _output_dim: Tuple[int, ...]

    @property
    def n_input(self) -> Tuple[int, ...]:
        """The input size given to the constructor, as a tuple."""
        return self._input_dim

    @property
    def n_output(self) -> Tuple[int, ...]:
        """The output size, as a tuple (``(1,)`` for a loss: one number)."""
        return self._output_dim


class _CourseLoss(CourseSizes, Criterion):
    """What the course's two losses share: the size, prediction and labels of one shape, the course's faces."""

    def __init__(self, size: Size) -> None:
        self._input_dim = course_sizes(size, type(self).__name__, max_axes=2)
        self._output_dim = (1,)

    def forward(self, x: Any, labels: Any = None) -> Any:  # type: ignore[override]
        """The loss of ``x`` against ``labels`` as an array of shape ``(1,)`` (the course's); keeps the pass."""
        if labels is None:
            raise ValueError(f"{type(self).__name__}.forward: labels are not provided")
        ctx = self._keep(lambda: self.run(x, labels))
        return namespace_of(ctx.y).reshape(ctx.y, (1,))

    def backward(self, input_pd: Any = None, reset_after: bool = True) -> Any:  # type: ignore[override]
        """``dL/dx`` of the last forward, shape of ``x``.

        The loss ends the network, so its upstream gradient is 1: ``input_pd``
        is taken and ignored, as the course did (its labs pass ``x`` there).
        """
        dx = self.backward_from(self._require_ctx("backward"), 1.0)
        if reset_after:
            self.reset()
        return dx

    def _prepare_inputs(self, inputs: Tuple[Any, ...]) -> Tuple[Tuple[Any, ...], dict]:
        name = type(self).__name__
        x = as_float_array(inputs[0], "x")
        if x.ndim not in (1, 2):
            raise ValueError(f"{name} takes a vector (n,) or rows (N, n), got x of shape {tuple(x.shape)}")
        xp = namespace_of(x)
        labels = as_float_array(inputs[1] if namespace_of(inputs[1]) is xp else xp.asarray(to_numpy(inputs[1])),
                                "labels")
        if tuple(labels.shape) != tuple(x.shape):
            raise ValueError(f"{name}: labels must have the shape of x {tuple(x.shape)}, got {tuple(labels.shape)}")
        labels = xp.astype(labels, x.dtype, copy=False)
        self._check_labels(labels)
        return (x,), {"target": labels}

    def _check_labels(self, labels: Any) -> None:
        """Raise ``ValueError`` for labels this loss cannot take."""

    def extra_repr(self) -> str:
        return f"{self._input_dim[0] if len(self._input_dim) == 1 else self._input_dim}"


def _rows(xp: Any, a: Any) -> Any:
    """A vector ``(n,)`` as one row ``(1, n)``; rows as they are."""
    return xp.reshape(a, (1, -1)) if a.ndim == 1 else a


class SoftMaxLoss(_CourseLoss):
    r"""The course's softmax loss, ``SoftMaxLoss(n)``: the mean over rows of :math:`-\log\langle l, y\rangle`.

    On one row, scores :math:`x` and labels :math:`l` of shape ``(C,)``, with
    :math:`y = \mathrm{NormalizedSoftMax}(x)` (the softmax of :math:`x / |x_k|`,
    :math:`k = \arg\max_j |x_j|`; :class:`~nn_from_scratch.nodes.NormalizedSoftMax`)
    and :math:`J_y` its Jacobian:

    .. math::
        \ell = -\log\langle l, y\rangle, \qquad
        \frac{\partial \ell}{\partial y} = -\frac{l}{\langle l, y\rangle}, \qquad
        \frac{\partial \ell}{\partial x} = J_y^\top\Big(-\frac{l}{\langle l, y\rangle}\Big),

    and over :math:`N` rows :math:`L = \frac1N\sum_r \ell_r`.  The labels may
    be multi-hot (every class marked counts as right, so :math:`\langle l,
    y\rangle` is their total probability), one-hot, or any non-negative
    weights; every row needs a positive entry.  ``n`` is the course's input
    size, ``5`` or ``(N, 5)``: its number of axes says whether ``x`` is a
    vector or rows; the lengths are read off ``x`` (the course's lab 11
    declares 4 classes for 3).

    The course's faces: ``forward(x, labels)`` returns the loss as an array of
    shape ``(1,)``, ``backward()`` (any argument is ignored, see
    :meth:`_CourseLoss.backward`) and ``jacobian()`` return
    :math:`\partial L/\partial x` in ``x``'s shape.  The course's own gradient
    was :math:`-l \odot \mathrm{diag}(J) / \ell`, which is not the derivative;
    this one is (``docs/course.md``).  For the library's loss with torch's
    reductions see :class:`nn_from_scratch.losses.SoftMaxLoss`.
    """

    def __init__(self, n_input: Size) -> None:
        super().__init__(n_input)
        self._normalized = NormalizedSoftMax()

    def _check_labels(self, labels: Any) -> None:
        xp = namespace_of(labels)
        if math.prod(labels.shape) == 0:
            return
        if not bool(xp.all(xp.isfinite(labels))) or bool(xp.any(labels < 0)):
            raise ValueError("SoftMaxLoss: labels must be finite and non-negative (one-hot or multi-hot rows)")
        totals = xp.reshape(xp.sum(_rows(xp, labels), axis=-1), (-1,))
        if bool(xp.any(totals <= 0)):
            row = int(np.flatnonzero(to_numpy(totals) <= 0)[0])
            raise ValueError(f"SoftMaxLoss: label row {row} marks no class, so -log(l·y) would be infinite; every row "
                             "needs a positive entry")

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        z, labels = _rows(xp, x), _rows(xp, ctx.target)
        # the NormalizedSoftMax pass, kept whole for its backward; it leaves that node untouched
        ctx.inner = self._normalized.run(z, update_state=ctx.update_state)
        per_row, ctx.dot = label_set_nll(ctx.inner.y, labels)  # -log <l, y>
        ctx.count = max(z.shape[0], 1)
        return xp.asarray(xp.sum(per_row) / ctx.count, dtype=x.dtype)  # L = (1/N) sum_r l_r

    def _vjp(self, g: Any, ctx: Context) -> Any:
        xp = ctx.xp
        dl_dy = label_set_nll_grad(_rows(xp, ctx.target), ctx.dot, g / ctx.count)  # -l / <l, y>, over N
        return xp.reshape(self._normalized.vjp_from(ctx.inner, dl_dy), tuple(ctx.x.shape))  # J_yᵀ dl/dy


class MSELoss(_CourseLoss):
    r"""The course's squared error, ``MSELoss(input_size)``: :math:`L = \frac1n \sum_{r,i} (x_{r,i} - b_{r,i})^2`.

    With :math:`n` the last entry of ``input_size`` (the course's ``(N, 4)``
    for boxes: the size of one row, not the number of entries; the batch is
    read off ``x``):

    .. math::
        L = \frac{1}{n}\sum_{r,i} (x_{r,i} - b_{r,i})^2, \qquad
        \frac{\partial L}{\partial x_{r,i}} = \frac{2}{n}(x_{r,i} - b_{r,i}).

    So :math:`L` is the sum over the rows of each row's mean squared error.
    The course's faces, as :class:`SoftMaxLoss`'s: ``forward(x, labels)``
    returns an array of shape ``(1,)``, ``backward()`` the gradient in
    ``x``'s shape.  The library's loss, which divides by every entry as torch
    does, is :class:`nn_from_scratch.losses.MSELoss`.
    """

    def __init__(self, input_size: Size) -> None:
        super().__init__(input_size)
        self._n = self._input_dim[-1]

    def _forward(self, x: Any, ctx: Context) -> Any:
        ctx.diff = x - ctx.target  # d = x - b
        return ctx.xp.asarray(ctx.xp.sum(ctx.diff * ctx.diff) / self._n, dtype=x.dtype)  # L = sum d² / n

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return (2 * g / self._n) * ctx.diff  # dL/dx = 2 d / n
