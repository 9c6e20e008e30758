"""RMSProp as in torch.optim.RMSprop."""
from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping

import numpy as np

from ..parameter import Parameter
from .base import Optimizer, _check_bool, _check_float, _lerp_

__all__ = ["RMSProp", "RMSprop"]


# --------------------------------------------------------------------------- #
# RMSProp
# --------------------------------------------------------------------------- #
class RMSProp(Optimizer):
    r"""RMSProp, as ``torch.optim.RMSprop``.

    With learning rate :math:`\gamma`, smoothing constant :math:`\alpha`,
    :math:`\epsilon`, weight decay :math:`\lambda` and momentum :math:`\mu`,
    starting from :math:`v_0 = \bar g_0 = b_0 = 0`, each step does

    .. math::
        \begin{aligned}
        g_t &\leftarrow \pm\nabla_\theta f_t(\theta_{t-1})
              \quad(\text{minus when } \textit{maximize}) \\
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} \quad (\text{if } \lambda \neq 0) \\
        v_t &\leftarrow \alpha v_{t-1} + (1-\alpha)\, g_t^2 \\
        \bar g_t &\leftarrow \alpha \bar g_{t-1} + (1-\alpha)\, g_t,\quad
              \tilde v_t \leftarrow v_t - \bar g_t^2
              \quad (\textit{centered}; \text{ else } \tilde v_t = v_t) \\
        b_t &\leftarrow \mu\, b_{t-1} + \frac{g_t}{\sqrt{\tilde v_t} + \epsilon},\quad
              \theta_t \leftarrow \theta_{t-1} - \gamma\, b_t \quad (\text{if } \mu > 0) \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\,\frac{g_t}{\sqrt{\tilde v_t} + \epsilon}
              \quad (\text{if } \mu = 0)
        \end{aligned}
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )

    @classmethod
    def _check_hyperparameters(cls, hyper: Dict[str, Any]) -> Dict[str, Any]:
        hyper = super()._check_hyperparameters(hyper)
        hyper["alpha"] = _check_float("alpha value", hyper["alpha"], high=1.0)
        hyper["eps"] = _check_float("epsilon value", hyper["eps"])
        hyper["weight_decay"] = _check_float("weight_decay value", hyper["weight_decay"])
        hyper["momentum"] = _check_float("momentum value", hyper["momentum"])
        hyper["centered"] = _check_bool("centered", hyper["centered"])
        hyper["maximize"] = _check_bool("maximize", hyper["maximize"])
        return hyper

    def _state_keys(self, hyper: Mapping[str, Any]) -> frozenset:
        keys = {"step", "square_avg"}
        if hyper["momentum"] > 0:
            keys.add("momentum_buffer")
        if hyper["centered"]:
            keys.add("grad_avg")
        return frozenset(keys)

    def _update(self, p: Parameter, state: Dict[str, Any]) -> None:
        value = p.value
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros(value.shape, dtype=value.dtype)
            if self.momentum > 0:
                state["momentum_buffer"] = np.zeros(value.shape, dtype=value.dtype)
            if self.centered:
                state["grad_avg"] = np.zeros(value.shape, dtype=value.dtype)
        s0, s1 = self._scratch(value)
        alpha = self.alpha
        state["step"] += 1
        g = self._effective_grad(p, self.weight_decay, self.maximize, out=s0)

        square_avg = state["square_avg"]
        square_avg *= alpha
        np.multiply(g, 1 - alpha, out=s1)
        s1 *= g
        square_avg += s1

        avg = s1
        if self.centered:
            grad_avg = state["grad_avg"]
            _lerp_(grad_avg, g, 1 - alpha, scratch=s1)
            np.multiply(grad_avg, grad_avg, out=avg)
            np.subtract(square_avg, avg, out=avg)
            np.sqrt(avg, out=avg)
        else:
            np.sqrt(square_avg, out=avg)
        avg += self.eps

        np.divide(g, avg, out=avg)
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += avg
            np.multiply(buf, self.lr, out=avg)
        else:
            avg *= self.lr
        value -= avg


RMSprop = RMSProp
