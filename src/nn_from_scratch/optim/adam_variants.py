"""Adam's relatives as in torch.optim: Adamax (the infinity norm), NAdam (Nesterov momentum), RAdam (rectified)."""
from __future__ import annotations

from types import ModuleType
from typing import Any, Dict, Iterable, Mapping, Tuple

import numpy as np

from ..engine import updates
from ..parameter import Parameter
from .adam import _Moments
from .arguments import check_count, check_float

__all__ = ["Adamax", "NAdam", "RAdam"]


def lerp(start: Any, end: Any, weight: float) -> Any:
    r""":math:`s + w\,(e - s)` as ``torch.lerp`` forms it (one formula or another as :math:`w` is below 1/2 or not).

    The same number as :math:`(1-w)\,s + w\,e` to rounding; where :math:`s`
    is infinite it gives torch's NaN (:math:`\infty - \infty`), where the
    plain sum would stay infinite.
    """
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


class Adamax(_Moments):
    r"""Adamax (Kingma and Ba, 2015, section 7.1), as ``torch.optim.Adamax``: Adam with the infinity norm.

    Starting from :math:`m_0 = u_0 = 0`, step :math:`t = 1, 2, \dots` does

    .. math::
        \begin{aligned}
        g_t &\leftarrow \pm\nabla_\theta f_t(\theta_{t-1}) + \lambda\,\theta_{t-1} \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1-\beta_1)\, g_t \\
        u_t &\leftarrow \max(\beta_2 u_{t-1},\, |g_t| + \epsilon) \\
        \theta_t &\leftarrow \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\, \frac{m_t}{u_t}
        \end{aligned}

    :math:`u` is torch's ``exp_inf``; every operation is elementwise, in
    the parameter's array namespace.
    """

    _second = ("exp_inf",)

    def __init__(self, params: Iterable[Any], lr: float = 2e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, *, maximize: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)

    def _update(self, p: Parameter, state: Dict[str, Any], group: Mapping[str, Any], xp: ModuleType,
                fast: bool) -> None:
        t = self._start(p, state, xp)
        (beta1, beta2), eps = group["betas"], group["eps"]
        if fast:  # torch's operations in place on scratch (its lerp_ for the first moment)
            updates.adamax_update(p.value, p.grad, state["exp_avg"], state["exp_inf"], t, self._scratch.take(p.value),
                                  group["lr"], group["betas"], eps, group["weight_decay"], group["maximize"])
            return
        g = self._gradient(p, group["weight_decay"], group["maximize"])  # g = ±∇ + λθ
        m, u = state["exp_avg"], state["exp_inf"]
        m[...] = beta1 * m + (1 - beta1) * g  # m = β1 m + (1 − β1) g
        u[...] = xp.maximum(beta2 * u, xp.abs(g) + eps)  # u = max(β2 u, |g| + ε)
        p.value -= group["lr"] / (1 - beta1**t) * (m / u)  # θ = θ − γ/(1 − β1ᵗ) · m / u


def float32_product(a: float, b: float) -> float:
    """``a * b`` as a float32 tensor times a Python number gives it in torch: both in float32, rounded to float32."""
    return float(np.float32(np.float32(a) * np.float32(b)))


def check_mu_product(name: str, value: Any) -> float:
    """NAdam's product of momentum factors: a number in [0, 1]."""
    return check_float(name, value, high=1.0)


class NAdam(_Moments):
    r"""NAdam (Dozat, 2016), as ``torch.optim.NAdam``: Adam with Nesterov momentum and a momentum schedule.

    With ``momentum_decay`` :math:`\psi`, the momentum factor of step
    :math:`t` is :math:`\mu_t = \beta_1 (1 - \tfrac12\, 0.96^{t\psi})`, and
    :math:`\Pi_t = \prod_{i \le t} \mu_i` (``mu_product``).  Starting from
    :math:`m_0 = v_0 = 0`, :math:`\Pi_0 = 1`, step :math:`t` does

    .. math::
        \begin{aligned}
        g_t &\leftarrow \pm\nabla_\theta f_t(\theta_{t-1}) + \lambda\,\theta_{t-1}
              \quad(\text{or } \theta_{t-1} \leftarrow (1-\gamma\lambda)\theta_{t-1}
              \text{ with decoupled decay}) \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1-\beta_1)\, g_t, \qquad
        v_t \leftarrow \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 \\
        d_t &\leftarrow \sqrt{v_t / (1-\beta_2^t)} + \epsilon \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\,\frac{1-\mu_t}{1-\Pi_t}\,\frac{g_t}{d_t}
              - \gamma\,\frac{\mu_{t+1}}{1-\Pi_t\,\mu_{t+1}}\,\frac{m_t}{d_t}
        \end{aligned}

    every operation elementwise, in the parameter's array namespace.
    :math:`\Pi_t` is a number of the state (``mu_product``), kept as torch
    keeps it: a tensor of torch's default dtype, float32, so rounded to
    float32 at each product (a relative 1e-8 that reaches the steps of a
    float64 run), and these steps are torch's to 1e-10 in float64 too.
    """

    _scalar_state = {"step": check_count, "mu_product": check_mu_product}

    def __init__(self, params: Iterable[Any], lr: float = 2e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, maximize: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                         maximize=maximize)

    @classmethod
    def _check_hyperparameters(cls, hyper: Dict[str, Any]) -> Dict[str, Any]:
        hyper = super()._check_hyperparameters(hyper)
        hyper["momentum_decay"] = check_float("momentum_decay value", hyper["momentum_decay"])
        return hyper

    def _update(self, p: Parameter, state: Dict[str, Any], group: Mapping[str, Any], xp: ModuleType,
                fast: bool) -> None:
        t = self._start(p, state, xp)
        state.setdefault("mu_product", 1.0)  # Π_0 = 1
        lr, (beta1, beta2), eps, psi = group["lr"], group["betas"], group["eps"], group["momentum_decay"]
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))  # μ_t
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))  # μ_{t+1}
        mu_product = state["mu_product"] = float32_product(state["mu_product"], mu)  # Π_t = Π_{t−1} μ_t
        if fast:  # torch's operations in place on scratch (its lerp_ for the first moment)
            updates.nadam_update(p.value, p.grad, state["exp_avg"], state["exp_avg_sq"], t,
                                 self._scratch.take(p.value), lr, group["betas"], eps, group["weight_decay"],
                                 group["decoupled_weight_decay"], group["maximize"],
                                 lr * (1.0 - mu) / (1.0 - mu_product), lr * mu_next / (1.0 - mu_product * mu_next))
            return
        g = self._decayed_gradient(p, group)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m[...] = beta1 * m + (1 - beta1) * g  # m = β1 m + (1 − β1) g
        v[...] = beta2 * v + (1 - beta2) * g * g  # v = β2 v + (1 − β2) g²
        d = xp.sqrt(v / (1 - beta2**t)) + eps  # d = √(v / (1 − β2ᵗ)) + ε
        p.value -= lr * (1.0 - mu) / (1.0 - mu_product) * (g / d)  # θ −= γ (1 − μ_t)/(1 − Π_t) · g/d
        p.value -= lr * mu_next / (1.0 - mu_product * mu_next) * (m / d)  # θ −= γ μ_{t+1}/(1 − Π_t μ_{t+1}) · m/d


class RAdam(_Moments):
    r"""RAdam (Liu et al., 2020), as ``torch.optim.RAdam``: Adam whose adaptive step is rectified, or held off.

    With :math:`\rho_\infty = 2/(1-\beta_2) - 1` and
    :math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)` (the length of
    the approximated moving average), starting from :math:`m_0 = v_0 = 0`,
    step :math:`t` does

    .. math::
        \begin{aligned}
        g_t &\leftarrow \pm\nabla_\theta f_t(\theta_{t-1}) + \lambda\,\theta_{t-1}
              \quad(\text{or } \theta_{t-1} \leftarrow (1-\gamma\lambda)\theta_{t-1}
              \text{ with decoupled decay}) \\
        m_t &\leftarrow \beta_1 m_{t-1} + (1-\beta_1)\, g_t, \qquad
        v_t \leftarrow \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2, \qquad
        \hat m_t \leftarrow m_t / (1-\beta_1^t) \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\,\hat m_t\, r_t\,
              \frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t} + \epsilon},\quad
              r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}
              \qquad (\rho_t > 5) \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\,\hat m_t \qquad (\rho_t \le 5)
        \end{aligned}

    every operation elementwise, in the parameter's array namespace.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled_weight_decay: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)

    def _update(self, p: Parameter, state: Dict[str, Any], group: Mapping[str, Any], xp: ModuleType,
                fast: bool) -> None:
        t = self._start(p, state, xp)
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        g = self._decayed_gradient(p, group)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        # m = β1 m + (1 − β1) g, formed as torch.lerp forms it: nothing divides the step below while ρ_t <= 5, so an
        # infinite m meeting a finite g must give torch's NaN, not stay infinite
        m[...] = lerp(m, g, 1 - beta1)
        v[...] = beta2 * v + (1 - beta2) * g * g  # v = β2 v + (1 − β2) g²
        bias_correction1, bias_correction2 = 1 - beta1**t, 1 - beta2**t
        m_hat = m / bias_correction1  # m̂ = m / (1 − β1ᵗ)
        rho_inf = 2 / (1 - beta2) - 1  # ρ∞
        rho_t = rho_inf - 2 * t * beta2**t / bias_correction2  # ρ_t
        if rho_t > 5.0:
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5  # r_t
            adaptive = bias_correction2**0.5 / (xp.sqrt(v) + eps)  # √(1 − β2ᵗ) / (√v + ε)
            p.value -= m_hat * lr * adaptive * rect  # θ = θ − γ m̂ r_t √(1 − β2ᵗ)/(√v + ε)
        else:
            p.value -= m_hat * lr  # θ = θ − γ m̂
