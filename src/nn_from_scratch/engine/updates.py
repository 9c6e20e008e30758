r"""The optimizers' fast updates: torch's single-tensor operation order, in place, on reused scratch.

The optimizers (:mod:`nn_from_scratch.optim`) state each update as its
formula on the parameter's array namespace.  Run on every mini-batch, that
formula allocates a temporary for every operation; here the same updates are
sequences of NumPy ufuncs with ``out=``, copied operation by operation from
the single-tensor (``foreach=False``) code of ``torch.optim`` 2.13 (its
``lerp_`` for the moving averages included), so float64 trajectories agree
with PyTorch to rounding.  Each update writes into two scratch arrays of the
parameter's shape and dtype, which a :class:`StepScratch` hands out: views
of two flat arrays per dtype from a :class:`~.workspace.Workspace`, as large
as the largest parameter of that dtype, shared by the parameters of one step
and given back when the step is over, so no step after the first allocates.
SGD's last operation, :math:`\theta \leftarrow \theta - \gamma d`, runs over
cache-sized blocks (:func:`descend`).

Every function takes NumPy arrays and changes the parameter and its state
arrays in place; none of them touches the gradient.  Everything is computed
in the parameter's own dtype.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .workspace import Workspace

__all__ = ["DESCENT_BLOCK", "StepScratch", "adadelta_update", "adagrad_update", "adam_update", "adamax_update",
           "descend", "effective_grad", "lerp_", "nadam_update", "rmsprop_update", "sgd_update"]

#: Elements per block of :func:`descend`: 65536 float32 numbers are 256 KiB, so a block of the step
#: and of the parameter stays in the L2 cache between the multiplication and the subtraction.
DESCENT_BLOCK = 1 << 16


class StepScratch:
    """Scratch arrays for the updates of one optimizer step, taken from a :class:`~.workspace.Workspace`.

    :meth:`take` hands out two arrays shaped like a parameter (three for Adadelta), as views of two
    flat arrays as large as the largest parameter of that dtype seen so far,
    so every parameter of a dtype shares the same arrays; :meth:`give_back`
    returns them when the step is over.  (On the first step, a parameter
    larger than those before it has the smaller arrays dropped and larger
    ones taken; every later step takes arrays of the final size.)  Copies
    and pickles of it are empty.
    """

    def __init__(self, keep: int = 4) -> None:
        self._keep = keep
        self.workspace = Workspace(keep=keep)
        self._sizes: Dict[np.dtype, int] = {}  # per dtype: the size of its largest parameter so far
        self._taken: Dict[np.dtype, List[np.ndarray]] = {}  # per dtype: taken for the step under way

    def take(self, like: np.ndarray, count: int = 2) -> Tuple[np.ndarray, ...]:
        """``count`` arrays shaped and typed like ``like``, with arbitrary contents, until :meth:`give_back`."""
        dtype, n = like.dtype, like.size
        size = self._sizes.get(dtype, 0)
        if size < n:
            size = self._sizes[dtype] = n
        taken = self._taken.setdefault(dtype, [])
        if taken and taken[0].size < size:  # a larger parameter of this dtype: the smaller arrays are dropped
            taken.clear()
        while len(taken) < count:
            taken.append(self.workspace.take((size,), dtype))
        return tuple(array[:n].reshape(like.shape) for array in taken[:count])

    def give_back(self) -> None:
        """Return the arrays of the step just done to the workspace."""
        for taken in self._taken.values():
            while taken:
                self.workspace.give(taken.pop())
        self._taken.clear()

    def __reduce__(self) -> Tuple[type, Tuple[int]]:
        return StepScratch, (self._keep,)


def lerp_(start: np.ndarray, end: np.ndarray, weight: float, scratch: np.ndarray) -> None:
    """``start <- start + weight * (end - start)`` in place, exactly as ``torch.lerp_``.

    Torch picks the formula by the size of the weight to keep the result
    accurate at both ends; ``scratch`` must not alias ``start`` or ``end``.
    """
    np.subtract(end, start, out=scratch)
    if abs(weight) < 0.5:
        scratch *= weight
        start += scratch
    else:
        scratch *= 1.0 - weight
        np.subtract(end, scratch, out=start)


def effective_grad(value: np.ndarray, grad: np.ndarray, weight_decay: float, maximize: bool,
                   out: np.ndarray) -> np.ndarray:
    r"""``g = \pm \nabla + \lambda\theta`` as torch forms it, without touching ``grad``.

    Returns ``grad`` itself when no change is needed, else ``out``.
    """
    if weight_decay != 0:
        np.multiply(value, weight_decay, out=out)
        if maximize:
            np.subtract(out, grad, out=out)
        else:
            np.add(grad, out, out=out)
        return out
    if maximize:
        np.negative(grad, out=out)
        return out
    return grad


def _step_gradient(value: np.ndarray, grad: np.ndarray, scratch: np.ndarray, weight_decay: float,
                   maximize: bool) -> np.ndarray:
    """The gradient an update uses: ``grad`` itself, or ``±grad + weight_decay * value`` in ``scratch``."""
    return effective_grad(value, grad, weight_decay, maximize, out=scratch) if weight_decay != 0 or maximize \
        else grad


def _average_square(average: np.ndarray, g: np.ndarray, decay: float, scratch: np.ndarray) -> None:
    """``average = decay * average + (1 - decay) * g * g`` in place, as torch's
    ``mul_(decay).addcmul_(g, g, value=1 - decay)``."""
    average *= decay
    np.multiply(g, 1 - decay, out=scratch)
    scratch *= g
    average += scratch


def descend(value: np.ndarray, direction: np.ndarray, lr: float, out: np.ndarray) -> None:
    r"""``value -= lr * direction`` in place, with ``out`` (``value``'s shape, may be ``direction``) as scratch.

    Over blocks of :data:`DESCENT_BLOCK` elements when the arrays are
    C-contiguous: the scaled step of a block is still in cache when it is
    subtracted, so the parameter's update streams ``direction`` and
    ``value`` through memory once, instead of writing and reading back a
    whole scaled copy (docs/performance.md).  The same two operations on
    every element, so the same bits as unblocked.
    """
    n = value.size
    if n <= DESCENT_BLOCK or not (value.flags.c_contiguous and direction.flags.c_contiguous and out.flags.c_contiguous):
        np.multiply(direction, lr, out=out)
        value -= out
        return
    flat_value, flat_direction, flat_out = value.reshape(-1), direction.reshape(-1), out.reshape(-1)
    for start in range(0, n, DESCENT_BLOCK):
        stop = min(start + DESCENT_BLOCK, n)
        step = np.multiply(flat_direction[start:stop], lr, out=flat_out[start:stop])
        target = flat_value[start:stop]
        np.subtract(target, step, out=target)


def sgd_update(value: np.ndarray, grad: np.ndarray, momentum_buffer: Optional[np.ndarray],
               scratch: Sequence[np.ndarray], lr: float, momentum: float, dampening: float, nesterov: bool,
               weight_decay: float, maximize: bool) -> Optional[np.ndarray]:
    """One SGD step of ``value`` in place (``torch.optim.SGD``); returns the momentum buffer.

    ``momentum_buffer`` is None on the first step (the buffer returned is
    then a copy of the gradient) and without momentum (None is returned).
    """
    s0, s1 = scratch
    g = _step_gradient(value, grad, s0, weight_decay, maximize)
    buf = momentum_buffer
    if momentum != 0:
        if buf is None:
            buf = np.array(g, copy=True, order="C")
        else:
            buf *= momentum
            if dampening != 0:
                np.multiply(g, 1.0 - dampening, out=s1)
                buf += s1
            else:
                buf += g
        if nesterov:
            np.multiply(buf, momentum, out=s1)
            np.add(g, s1, out=s1)
            direction = s1
        else:
            direction = buf
    else:
        direction = g
    descend(value, direction, lr, direction if direction is s0 or direction is s1 else s1)
    return buf


def _adam_moments(value: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
                  scratch: Sequence[np.ndarray], lr: float, betas: Tuple[float, float], weight_decay: float,
                  decoupled_weight_decay: bool, maximize: bool) -> np.ndarray:
    """The opening that Adam's and NAdam's steps share, torch's operations in place: the weight decay (decoupled
    into ``value``, or into the gradient), then both moments; returns the gradient used (``grad`` or ``scratch[0]``)."""
    s0, s1 = scratch
    beta1, beta2 = betas
    if decoupled_weight_decay:
        if weight_decay != 0:
            value *= 1 - lr * weight_decay
        g = _step_gradient(value, grad, s0, 0.0, maximize)
    else:
        g = _step_gradient(value, grad, s0, weight_decay, maximize)
    lerp_(exp_avg, g, 1 - beta1, scratch=s1)
    _average_square(exp_avg_sq, g, beta2, s1)
    return g


def adam_update(value: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
                max_exp_avg_sq: Optional[np.ndarray], step: int, scratch: Sequence[np.ndarray], lr: float,
                betas: Tuple[float, float], eps: float, weight_decay: float, decoupled_weight_decay: bool,
                maximize: bool) -> None:
    """One Adam step (AdamW's with ``decoupled_weight_decay``) of ``value`` and its moments, in place.

    ``step`` counts this step (1 on the first); ``max_exp_avg_sq`` is None
    without amsgrad.
    """
    s1 = scratch[1]
    beta1, beta2 = betas
    _adam_moments(value, grad, exp_avg, exp_avg_sq, scratch, lr, betas, weight_decay, decoupled_weight_decay, maximize)

    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2**0.5

    if max_exp_avg_sq is not None:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    else:
        second = exp_avg_sq
    denom = s1
    np.sqrt(second, out=denom)
    denom /= bias_correction2_sqrt
    denom += eps
    np.divide(exp_avg, denom, out=denom)
    denom *= step_size
    value -= denom


def rmsprop_update(value: np.ndarray, grad: np.ndarray, square_avg: np.ndarray, grad_avg: Optional[np.ndarray],
                   momentum_buffer: Optional[np.ndarray], scratch: Sequence[np.ndarray], lr: float, alpha: float,
                   eps: float, weight_decay: float, momentum: float, maximize: bool) -> None:
    """One RMSProp step of ``value`` and its averages, in place (``torch.optim.RMSprop``).

    ``grad_avg`` is None unless centered, ``momentum_buffer`` None unless ``momentum > 0``.
    """
    s0, s1 = scratch
    g = _step_gradient(value, grad, s0, weight_decay, maximize)

    _average_square(square_avg, g, alpha, s1)

    avg = s1
    if grad_avg is not None:
        lerp_(grad_avg, g, 1 - alpha, scratch=s1)
        np.multiply(grad_avg, grad_avg, out=avg)
        np.subtract(square_avg, avg, out=avg)
        np.sqrt(avg, out=avg)
    else:
        np.sqrt(square_avg, out=avg)
    avg += eps

    np.divide(g, avg, out=avg)
    if momentum > 0:
        momentum_buffer *= momentum
        momentum_buffer += avg
        np.multiply(momentum_buffer, lr, out=avg)
    else:
        avg *= lr
    value -= avg


def _step_gradient(value: np.ndarray, grad: np.ndarray, scratch: np.ndarray, weight_decay: float,
                         maximize: bool) -> np.ndarray:
    """The gradient an update uses: ``grad`` itself, or ``±grad + weight_decay * value`` in ``scratch``."""
    return effective_grad(value, grad, weight_decay, maximize, out=scratch) if weight_decay != 0 or maximize \
        else grad


def adagrad_update(value: np.ndarray, grad: np.ndarray, state_sum: np.ndarray, scratch: Sequence[np.ndarray],
                   clr: float, eps: float, weight_decay: float, maximize: bool) -> None:
    r"""One Adagrad step of ``value`` and its sum of squares, in place (``torch.optim.Adagrad``).

    ``clr`` is the step's decayed rate, :math:`\gamma / (1 + (t-1)\eta)`.
    """
    s0, s1 = scratch
    g = _step_gradient(value, grad, s0, weight_decay, maximize)
    np.multiply(g, g, out=s1)
    state_sum += s1
    np.sqrt(state_sum, out=s1)
    s1 += eps
    np.divide(g, s1, out=s1)
    s1 *= clr
    value -= s1


def adamax_update(value: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_inf: np.ndarray, step: int,
                  scratch: Sequence[np.ndarray], lr: float, betas: Tuple[float, float], eps: float,
                  weight_decay: float, maximize: bool) -> None:
    """One Adamax step of ``value``, its first moment and its infinity norm, in place (``torch.optim.Adamax``)."""
    s0, s1 = scratch
    beta1, beta2 = betas
    g = _step_gradient(value, grad, s0, weight_decay, maximize)
    lerp_(exp_avg, g, 1 - beta1, scratch=s1)
    exp_inf *= beta2
    np.abs(g, out=s1)
    s1 += eps
    np.maximum(exp_inf, s1, out=exp_inf)
    np.divide(exp_avg, exp_inf, out=s1)
    s1 *= lr / (1 - beta1**step)
    value -= s1


def nadam_update(value: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray, step: int,
                 scratch: Sequence[np.ndarray], lr: float, betas: Tuple[float, float], eps: float,
                 weight_decay: float, decoupled_weight_decay: bool, maximize: bool, gradient_coefficient: float,
                 moment_coefficient: float) -> None:
    r"""One NAdam step of ``value`` and its moments, in place (``torch.optim.NAdam``).

    The two coefficients, :math:`\gamma(1-\mu_t)/(1-\Pi_t)` and
    :math:`\gamma\mu_{t+1}/(1-\Pi_t\mu_{t+1})`, come from the optimizer,
    which keeps the momentum product.
    """
    s0, s1 = scratch
    beta2 = betas[1]
    g = _adam_moments(value, grad, exp_avg, exp_avg_sq, scratch, lr, betas, weight_decay, decoupled_weight_decay,
                      maximize)
    denom = s1
    np.divide(exp_avg_sq, 1 - beta2**step, out=denom)
    np.sqrt(denom, out=denom)
    denom += eps
    np.divide(g, denom, out=s0)
    s0 *= gradient_coefficient
    value -= s0
    np.divide(exp_avg, denom, out=denom)
    denom *= moment_coefficient
    value -= denom


def adadelta_update(value: np.ndarray, grad: np.ndarray, square_avg: np.ndarray, acc_delta: np.ndarray,
                    scratch: Sequence[np.ndarray], lr: float, rho: float, eps: float, weight_decay: float,
                    maximize: bool) -> None:
    """One Adadelta step of ``value`` and its two averages, in place (``torch.optim.Adadelta``); 3 scratch arrays."""
    s0, s1, s2 = scratch
    g = _step_gradient(value, grad, s0, weight_decay, maximize)
    _average_square(square_avg, g, rho, s1)
    std = s1
    np.add(square_avg, eps, out=std)
    np.sqrt(std, out=std)
    delta = s2
    np.add(acc_delta, eps, out=delta)
    np.sqrt(delta, out=delta)
    delta /= std
    delta *= g
    _average_square(acc_delta, delta, rho, s1)
    np.multiply(delta, lr, out=s1)
    value -= s1
