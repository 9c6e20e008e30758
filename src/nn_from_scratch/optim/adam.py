"""Adam and AdamW as in torch.optim."""
from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Tuple

import numpy as np

from ..parameter import Parameter
from .base import Optimizer, _check_betas, _check_bool, _check_float, _lerp_

__all__ = ["Adam", "AdamW"]


# --------------------------------------------------------------------------- #
# Adam / AdamW
# --------------------------------------------------------------------------- #
class Adam(Optimizer):
    r"""Adam, as ``torch.optim.Adam`` (L2 weight decay added to the gradient).

    With learning rate :math:`\gamma`, betas :math:`(\beta_1, \beta_2)`,
    :math:`\epsilon` and weight decay :math:`\lambda`, starting from
    :math:`m_0 = v_0 = \hat v_0^{\max} = 0`, step :math:`t = 1, 2, \dots` does

    .. math::
        \begin{aligned}
        g_t &\leftarrow \pm\nabla_\theta f_t(\theta_{t-1})
              \quad(\text{minus when } \textit{maximize}) \\
        g_t &\leftarrow g_t + \lambda\,\theta_{t-1} \quad (\text{if } \lambda \neq 0) \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        v_t &\leftarrow \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \\
        v_t^{\max} &\leftarrow \max(v_{t-1}^{\max}, v_t)
              \quad (\textit{amsgrad}; \text{ else } v_t^{\max} = v_t) \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
              \frac{m_t}{\sqrt{v_t^{\max}} / \sqrt{1-\beta_2^t} + \epsilon}
        \end{aligned}

    (torch applies :math:`\epsilon` after dividing by the bias correction
    :math:`\sqrt{1-\beta_2^t}`, and so does this class).
    """

    _decoupled_weight_decay = False

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize)

    @classmethod
    def _check_hyperparameters(cls, hyper: Dict[str, Any]) -> Dict[str, Any]:
        hyper = super()._check_hyperparameters(hyper)
        hyper["betas"] = _check_betas(hyper["betas"])
        hyper["eps"] = _check_float("epsilon value", hyper["eps"])
        hyper["weight_decay"] = _check_float("weight_decay value", hyper["weight_decay"])
        hyper["amsgrad"] = _check_bool("amsgrad", hyper["amsgrad"])
        hyper["maximize"] = _check_bool("maximize", hyper["maximize"])
        return hyper

    def _state_keys(self, hyper: Mapping[str, Any]) -> frozenset:
        keys = {"step", "exp_avg", "exp_avg_sq"}
        if hyper["amsgrad"]:
            keys.add("max_exp_avg_sq")
        return frozenset(keys)

    def _update(self, p: Parameter, state: Dict[str, Any]) -> None:
        value = p.value
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros(value.shape, dtype=value.dtype)
            state["exp_avg_sq"] = np.zeros(value.shape, dtype=value.dtype)
            if self.amsgrad:
                state["max_exp_avg_sq"] = np.zeros(value.shape, dtype=value.dtype)
        s0, s1 = self._scratch(value)
        lr = self.lr
        beta1, beta2 = self.betas
        weight_decay = self.weight_decay
        step = state["step"] + 1
        state["step"] = step

        if self._decoupled_weight_decay:
            if weight_decay != 0:
                value *= 1 - lr * weight_decay
            g = self._effective_grad(p, 0.0, self.maximize, out=s0)
        else:
            g = self._effective_grad(p, weight_decay, self.maximize, out=s0)

        exp_avg = state["exp_avg"]
        exp_avg_sq = state["exp_avg_sq"]
        _lerp_(exp_avg, g, 1 - beta1, scratch=s1)
        exp_avg_sq *= beta2
        np.multiply(g, 1 - beta2, out=s1)
        s1 *= g
        exp_avg_sq += s1

        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5

        if self.amsgrad:
            max_exp_avg_sq = state["max_exp_avg_sq"]
            np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
            second = max_exp_avg_sq
        else:
            second = exp_avg_sq
        denom = s1
        np.sqrt(second, out=denom)
        denom /= bias_correction2_sqrt
        denom += self.eps
        np.divide(exp_avg, denom, out=denom)
        denom *= step_size
        value -= denom


class AdamW(Adam):
    r"""AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay.

    The weight decay shrinks the parameters directly instead of entering the
    gradient (and so the moment estimates):

    .. math::
        \begin{aligned}
        g_t &\leftarrow \pm\nabla_\theta f_t(\theta_{t-1}) \\
        \theta_{t-1} &\leftarrow \theta_{t-1} - \gamma\lambda\,\theta_{t-1}
              = (1-\gamma\lambda)\,\theta_{t-1} \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        v_t &\leftarrow \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \\
        v_t^{\max} &\leftarrow \max(v_{t-1}^{\max}, v_t)
              \quad (\textit{amsgrad}; \text{ else } v_t^{\max} = v_t) \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
              \frac{m_t}{\sqrt{v_t^{\max}} / \sqrt{1-\beta_2^t} + \epsilon}
        \end{aligned}
    """

    _decoupled_weight_decay = True

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        """Adam's arguments; only the default weight decay differs (1e-2, as torch's AdamW)."""
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
