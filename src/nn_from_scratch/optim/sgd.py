"""Stochastic gradient descent, with momentum and Nesterov momentum as in torch.optim.SGD."""
from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping

import numpy as np

from ..parameter import Parameter
from .base import Optimizer, _check_bool, _check_float

__all__ = ["SGD", "GradientDescent"]


#: Elements per block of :func:`_descend`: 65536 float32 numbers are 256 KiB, so a block of the step
#: and of the parameter stays in the L2 cache between the multiplication and the subtraction.
DESCENT_BLOCK = 1 << 16


def _descend(value: np.ndarray, direction: np.ndarray, lr: float, out: np.ndarray) -> None:
    r"""``value -= lr * direction`` in place, with ``out`` (``value``'s shape, may be ``direction``) as scratch.

    Over blocks of :data:`DESCENT_BLOCK` elements when the arrays are
    C-contiguous: the scaled step of a block is still in cache when it is
    subtracted, so the parameter's update streams ``direction`` and
    ``value`` through memory once, instead of writing and reading back a
    whole scaled copy (measured on the benchmark's 784-512-256-10 MLP, on a
    shared 2-core machine: the update of its 535 000 float32 numbers took
    0.74 of the unblocked time in one run, 0.88 to 0.94 in another; blocks
    of 8192 were slower than unblocked, 16384 to 65536 faster).  The
    same two operations on every element, so the same bits as unblocked.
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


# --------------------------------------------------------------------------- #
# SGD
# --------------------------------------------------------------------------- #
class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum, as ``torch.optim.SGD``.

    With learning rate :math:`\gamma`, momentum :math:`\mu`, dampening
    :math:`\tau` and weight decay :math:`\lambda`, each step does

    .. math::
        \begin{aligned}
        g_t &\leftarrow \pm\nabla_\theta f_t(\theta_{t-1})
              \quad(\text{minus when } \textit{maximize}) \\
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} \quad (\text{if } \lambda \neq 0) \\
        b_t &\leftarrow \begin{cases} g_t & t = 1 \\
              \mu\, b_{t-1} + (1-\tau)\, g_t & t > 1 \end{cases}
              \quad (\text{if } \mu \neq 0) \\
        g_t &\leftarrow \begin{cases} g_t + \mu\, b_t & \textit{nesterov} \\
              b_t & \text{otherwise} \end{cases} \quad (\text{if } \mu \neq 0) \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\, g_t
        \end{aligned}

    The momentum buffer starts as the first gradient itself (no dampening on
    the first step).  Nesterov momentum needs :math:`\mu > 0` and
    :math:`\tau = 0`.
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
            maximize=maximize,
        )

    @classmethod
    def _check_hyperparameters(cls, hyper: Dict[str, Any]) -> Dict[str, Any]:
        hyper = super()._check_hyperparameters(hyper)
        hyper["momentum"] = _check_float("momentum value", hyper["momentum"])
        hyper["dampening"] = _check_float("dampening value", hyper["dampening"], high=1.0)
        hyper["nesterov"] = _check_bool("nesterov", hyper["nesterov"])
        hyper["weight_decay"] = _check_float("weight_decay value", hyper["weight_decay"])
        hyper["maximize"] = _check_bool("maximize", hyper["maximize"])
        if hyper["nesterov"] and (hyper["momentum"] <= 0 or hyper["dampening"] != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum > 0 and zero dampening "
                f"(got momentum={hyper['momentum']!r}, dampening={hyper['dampening']!r})"
            )
        return hyper

    def _state_keys(self, hyper: Mapping[str, Any]) -> frozenset:
        return frozenset({"momentum_buffer"}) if hyper["momentum"] != 0 else frozenset()

    def _update(self, p: Parameter, state: Dict[str, Any]) -> None:
        s0, s1 = self._scratch(p.value)
        momentum = self.momentum
        g = self._effective_grad(p, self.weight_decay, self.maximize, out=s0)
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = np.array(g, copy=True, order="C")
                state["momentum_buffer"] = buf
            else:
                buf *= momentum
                if self.dampening != 0:
                    np.multiply(g, 1.0 - self.dampening, out=s1)
                    buf += s1
                else:
                    buf += g
            if self.nesterov:
                np.multiply(buf, momentum, out=s1)
                np.add(g, s1, out=s1)
                direction = s1
            else:
                direction = buf
        else:
            direction = g
        _descend(p.value, direction, self.lr, direction if direction is s0 or direction is s1 else s1)


class GradientDescent(SGD):
    r"""Plain (mini-batch) gradient descent, the course's name for momentum-free SGD.

    .. math::
        \theta_t \leftarrow \theta_{t-1} - \gamma\, \nabla_\theta f_t(\theta_{t-1})
    """

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        super().__init__(params, lr=lr)
