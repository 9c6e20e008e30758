r"""Embedding: a table of vectors looked up by integer index, as ``torch.nn.Embedding``."""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Dict, Optional

import numpy as np

from ..context import Context, record_undo
from ..engine import embedding as kernels
from ..node import Node
from ..parameter import Parameter
from ..random import as_generator
from .activations import _check_real
from .broadcasting import dtype_in, work_dtype
from .linear import float_dtype, positive_sizes

__all__ = ["Embedding"]


class Embedding(Node):
    r"""A table of ``num_embeddings`` vectors of ``embedding_dim`` numbers, looked up by integer index.

    With :math:`W` = ``weight`` ``(V, D)`` (:math:`V` = ``num_embeddings``,
    :math:`D` = ``embedding_dim``) and an index array ``i`` of any shape,
    ``y`` has shape ``i.shape + (D,)``; over the :math:`N` indices, with
    :math:`E` the :math:`N \times V` one-hot matrix of the indices
    (:math:`E_{kv} = [i_k = v]`) and :math:`G = \partial L/\partial Y` ``(N, D)``:

    .. math::
        y_k = W_{i_k}, \quad Y = E\,W, \qquad
        \frac{\partial L}{\partial W} = E^\top G, \quad
        \frac{\partial L}{\partial W_v} = \sum_{k : i_k = v} g_k,

    each row's gradient the sum of the upstream gradients of its lookups
    (where :math:`G` holds infinities or NaN, as IEEE addition sums them,
    not through :math:`0 \cdot \infty`).  The indices are a constant input:
    no gradient (``backward`` returns None for them, the Jacobian is None).
    The indices are integers (any integer dtype; booleans are refused, as
    torch refuses them), each in ``[0, num_embeddings)``.  Unlike torch, a
    float array of whole numbers is taken too, since
    :class:`~nn_from_scratch.containers.Sequential` and the trainer hand a
    model its input as floats; a fraction, an infinity or NaN is refused.

    torch's options, in torch's order:

    * ``padding_idx``: that row (negative counts from the end) starts at 0
      and gets no gradient; a lookup of it still gives its current value;
    * ``max_norm``: at each forward pass every row looked up whose
      ``norm_type``-norm :math:`n` exceeds ``max_norm`` is scaled, in the
      table itself, by :math:`\text{max\_norm}/(n + 10^{-7})`, as torch's
      ``embedding_renorm_`` does; the gradient is taken at the renormalised
      rows.  ``evaluate`` and ``jacobian(x)``, which change nothing, look
      the renormalised rows up without writing them (torch would write
      them); a call refused later in a model puts the table back;
    * ``scale_grad_by_freq``: each row's gradient is divided by the number
      of its lookups in the batch;
    * ``sparse``: accepted and kept for torch's signature; the gradient is
      dense here (the same numbers as torch's sparse one).

    ``weight`` is drawn from :math:`\mathcal N(0, 1)` (``rng`` a generator or
    a seed), in ``dtype``; it carries torch's key and layout.

    The textbook path is the formula: a ``take`` of rows, and :math:`E^\top G`
    with the one-hot matrix (:math:`N \times V` numbers).  The fast path
    (NumPy arrays, the engine on) adds the rows of :math:`G` into the
    gradient by index (:mod:`nn_from_scratch.engine.embedding`), in another
    order of summation.
    """

    constant_inputs = (0,)

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: Optional[int] = None,
                 max_norm: Optional[float] = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, *, rng: Any = None, dtype: Any = np.float64) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = positive_sizes(num_embeddings=num_embeddings,
                                                                 embedding_dim=embedding_dim)
        if padding_idx is not None:
            if isinstance(padding_idx, (bool, np.bool_)) or not isinstance(padding_idx, (int, np.integer)):
                raise TypeError(f"padding_idx must be an int or None, got {padding_idx!r}")
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"padding_idx must be within num_embeddings ({self.num_embeddings}), got "
                                 f"{padding_idx}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx: Optional[int] = padding_idx
        if max_norm is not None and not _check_real("max_norm", max_norm) > 0:
            raise ValueError(f"max_norm must be positive, got {max_norm}")
        self.max_norm = None if max_norm is None else float(max_norm)
        if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float, np.integer, np.floating)) \
                or not norm_type > 0:
            raise ValueError(f"norm_type must be a positive number (inf for the largest magnitude), got {norm_type!r}")
        self.norm_type = float(norm_type)
        self.scale_grad_by_freq, self.sparse = bool(scale_grad_by_freq), bool(sparse)
        self.dtype = float_dtype(dtype)
        weight = as_generator(rng).standard_normal((self.num_embeddings, self.embedding_dim))
        if self.padding_idx is not None:
            weight[self.padding_idx] = 0
        self.weight = Parameter(weight.astype(self.dtype))

    def config(self) -> Dict[str, Any]:
        return self._config_of("num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type",
                              "scale_grad_by_freq", "sparse", "dtype")

    def _check_input(self, indices: Any) -> None:
        xp = _namespace(indices)
        if xp.isdtype(indices.dtype, "real floating"):
            if not bool(xp.all(xp.isfinite(indices) & (xp.floor(indices) == indices))):
                raise ValueError("Embedding takes integer indices; a float array must hold whole numbers only, got "
                                 "fractions, infinities or NaN")
        elif not xp.isdtype(indices.dtype, "integral"):
            raise TypeError(f"Embedding takes integer indices, got dtype {indices.dtype}")
        if math.prod(indices.shape) and (int(xp.min(indices)) < 0 or int(xp.max(indices)) >= self.num_embeddings):
            raise ValueError(f"Embedding({self.num_embeddings}, {self.embedding_dim}): every index must lie in "
                             f"[0, {self.num_embeddings}), got indices from {int(xp.min(indices))} to "
                             f"{int(xp.max(indices))}")

    # ---------------------------------------------------------------- the pass
    def _forward(self, indices: Any, ctx: Context) -> Any:
        xp = ctx.xp
        ctx.flat = flat = xp.astype(xp.reshape(xp.asarray(indices), (-1,)), xp.int64)
        table = self.weight.value if self.max_norm is None else self._renormalised(xp, flat, ctx.update_state)
        rows = xp.take(table, flat, axis=0)  # y_k = W[i_k]
        return xp.reshape(rows, tuple(indices.shape) + (self.embedding_dim,))

    def _renormalised(self, xp: ModuleType, flat: Any, write: bool) -> Any:
        """The table with every row looked up scaled down to ``max_norm``; written into ``weight`` when ``write``."""
        table = self.weight.value
        if flat.shape[0] == 0:
            return table
        used = xp.sort(xp.unique_values(flat))  # the standard leaves unique_values' order open
        every_row = xp.arange(self.num_embeddings)
        looked_up = xp.take(used, xp.clip(xp.searchsorted(used, every_row), 0, used.shape[0] - 1)) == every_row
        norms = _norms(xp, table, self.norm_type)
        too_long = looked_up & (norms > self.max_norm)
        if not bool(xp.any(too_long)):
            return table
        scale = xp.where(too_long, self.max_norm / (norms + 1e-7), xp.ones_like(norms))  # torch's embedding_renorm_
        renormalised = table * xp.reshape(xp.astype(scale, table.dtype), (-1, 1))
        if write:  # in place, as torch; a refused call puts the table back
            saved = xp.asarray(table, copy=True)
            record_undo(lambda: _assign(table, saved))
            table[...] = renormalised
            return table
        return renormalised

    def _vjp(self, g: Any, ctx: Context) -> None:
        return None  # the indices have no gradient

    def _jacobian(self, ctx: Context) -> None:
        return None

    def _accumulate_grads(self, g: Any, ctx: Context) -> None:
        xp, flat = ctx.xp, ctx.flat
        work = dtype_in(xp, work_dtype(np, self.dtype))
        G = xp.reshape(xp.astype(g, work, copy=False), (-1, self.embedding_dim))
        if ctx.fast:  # the rows added into .grad by index, without the one-hot matrix
            kernels.add_rows_at(self.weight.edit_grad(), flat, G, self.padding_idx, self.scale_grad_by_freq)
            return
        one_hot = xp.astype(xp.reshape(flat, (-1, 1)) == xp.arange(self.num_embeddings), work)  # E, (N, V)
        grad = _sum_by_index(xp, one_hot, G)  # dL/dW = Eᵀ G
        if self.scale_grad_by_freq:
            grad = grad / xp.reshape(xp.maximum(xp.sum(one_hot, axis=0), 1.0), (-1, 1))
        if self.padding_idx is not None:
            grad = xp.where(xp.reshape(xp.arange(self.num_embeddings) == self.padding_idx, (-1, 1)), 0.0, grad)
        self.weight.accumulate(xp.astype(grad, self.weight.dtype))

    def extra_repr(self) -> str:
        options = [f"{self.num_embeddings}, {self.embedding_dim}"]
        options += [f"{name}={value}" for name, value in (("padding_idx", self.padding_idx),
                                                          ("max_norm", self.max_norm)) if value is not None]
        if self.norm_type != 2.0:
            options.append(f"norm_type={self.norm_type}")
        options += [name + "=True" for name in ("scale_grad_by_freq", "sparse") if getattr(self, name)]
        return ", ".join(options)


def _namespace(a: Any) -> ModuleType:
    return np if isinstance(a, (np.ndarray, np.generic)) else a.__array_namespace__()


def _norms(xp: ModuleType, table: Any, p: float) -> Any:
    r"""The :math:`p`-norm of each row, :math:`(\sum_j |w_j|^p)^{1/p}` (the largest magnitude for ``p = inf``)."""
    magnitude = xp.abs(table)
    if p == math.inf:
        return xp.max(magnitude, axis=1)
    if p == 2.0:
        return xp.sqrt(xp.sum(magnitude * magnitude, axis=1))
    return xp.sum(magnitude ** p, axis=1) ** (1 / p)


def _sum_by_index(xp: ModuleType, one_hot: Any, G: Any) -> Any:
    r""":math:`E^\top G`, each row of :math:`G` added into the row of its index, as IEEE addition sums them.

    The product itself would give :math:`0 \cdot \infty = \text{NaN}` in
    every row where :math:`G` holds an infinity; so the finite part is the
    product, and where a sum takes an infinity or a NaN, the count of each
    kind decides: NaN for a NaN or for :math:`+\infty` with :math:`-\infty`,
    else the infinity.
    """
    finite = xp.isfinite(G)
    total = one_hot.T @ xp.where(finite, G, 0.0)
    if bool(xp.all(finite)):
        return total

    def count(mask: Any) -> Any:
        return one_hot.T @ xp.astype(mask, G.dtype)

    up, down = count(G == xp.inf), count(G == -xp.inf)
    nan = (count(xp.isnan(G)) > 0) | ((up > 0) & (down > 0))
    return xp.where(nan, xp.nan, xp.where(up > 0, xp.inf, xp.where(down > 0, -xp.inf, total)))


def _assign(target: Any, value: Any) -> None:
    target[...] = value
