"""Adagrad and Adadelta as in torch.optim: per-coordinate rates from the running size of the gradients."""
from __future__ import annotations

from types import ModuleType
from typing import Any, Dict, Iterable, Mapping

from ..engine import updates
from ..parameter import Parameter
from .arguments import check_bool, check_float
from .base import Optimizer

__all__ = ["Adadelta", "Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad (Duchi, Hazan and Singer, 2011), as ``torch.optim.Adagrad``.

    With learning rate :math:`\gamma`, rate decay :math:`\eta`, weight decay
    :math:`\lambda`, :math:`\epsilon` and the sum starting at
    ``initial_accumulator_value`` :math:`s_0`, step :math:`t = 1, 2, \dots`
    does

    .. math::
        \begin{aligned}
        g_t &\leftarrow \pm\nabla_\theta f_t(\theta_{t-1}) + \lambda\,\theta_{t-1} \\
        \tilde\gamma_t &\leftarrow \gamma / (1 + (t-1)\,\eta) \\
        s_t &\leftarrow s_{t-1} + g_t^2 \\
        \theta_t &\leftarrow \theta_{t-1} - \tilde\gamma_t\, \frac{g_t}{\sqrt{s_t} + \epsilon}
        \end{aligned}

    (minus on the gradient when ``maximize``).  :math:`\theta`, :math:`g`
    and :math:`s` have the parameter's shape and dtype; every operation is
    elementwise.  ``_update`` is these lines in the parameter's array
    namespace; with the engine on and NumPy arrays,
    :func:`~nn_from_scratch.engine.updates.adagrad_update` runs torch's
    operations in place.  The state, ``step`` and ``sum``, is made at the
    first step (torch makes it in the constructor; the numbers are the
    same), from the group's ``initial_accumulator_value`` (torch's fills
    every sum from the constructor's, whatever a group sets).
    """

    _probe = "sum"

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, maximize: bool = False) -> None:
        super().__init__(params, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize)

    @classmethod
    def _check_hyperparameters(cls, hyper: Dict[str, Any]) -> Dict[str, Any]:
        hyper = super()._check_hyperparameters(hyper)
        hyper["lr_decay"] = check_float("lr_decay value", hyper["lr_decay"])
        hyper["weight_decay"] = check_float("weight_decay value", hyper["weight_decay"])
        hyper["initial_accumulator_value"] = check_float("initial_accumulator_value value",
                                                         hyper["initial_accumulator_value"])
        hyper["eps"] = check_float("epsilon value", hyper["eps"])
        hyper["maximize"] = check_bool("maximize", hyper["maximize"])
        return hyper

    def _state_keys(self, hyper: Mapping[str, Any]) -> frozenset:
        return frozenset({"step", "sum"})

    def _update(self, p: Parameter, state: Dict[str, Any], group: Mapping[str, Any], xp: ModuleType,
                fast: bool) -> None:
        if not state:  # t = 0, s = s0
            state["step"] = 0
            state["sum"] = xp.full(p.value.shape, group["initial_accumulator_value"], dtype=p.value.dtype)
        state["step"] += 1
        t, lr, eps = state["step"], group["lr"], group["eps"]
        clr = lr / (1 + (t - 1) * group["lr_decay"])  # γ / (1 + (t − 1) η)
        if fast:  # torch's operations in place on scratch
            updates.adagrad_update(p.value, p.grad, state["sum"], self._scratch.take(p.value), clr, eps,
                                   group["weight_decay"], group["maximize"])
            return
        g = self._gradient(p, group["weight_decay"], group["maximize"])  # g = ±∇ + λθ
        s = state["sum"]
        s[...] = s + g * g  # s = s + g²
        p.value -= clr * (g / (xp.sqrt(s) + eps))  # θ = θ − γ̃ g / (√s + ε)


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler, 2012), as ``torch.optim.Adadelta``.

    With learning rate :math:`\gamma`, :math:`\rho`, :math:`\epsilon` and
    weight decay :math:`\lambda`, starting from :math:`v_0 = u_0 = 0`, each
    step does

    .. math::
        \begin{aligned}
        g_t &\leftarrow \pm\nabla_\theta f_t(\theta_{t-1}) + \lambda\,\theta_{t-1} \\
        v_t &\leftarrow \rho\, v_{t-1} + (1-\rho)\, g_t^2 \\
        \Delta_t &\leftarrow \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t \\
        u_t &\leftarrow \rho\, u_{t-1} + (1-\rho)\, \Delta_t^2 \\
        \theta_t &\leftarrow \theta_{t-1} - \gamma\, \Delta_t
        \end{aligned}

    (minus on the gradient when ``maximize``).  :math:`v` is torch's
    ``square_avg``, :math:`u` its ``acc_delta``; every operation is
    elementwise.  ``_update`` is these lines in the parameter's array
    namespace; with the engine on and NumPy arrays,
    :func:`~nn_from_scratch.engine.updates.adadelta_update` runs torch's
    operations in place.
    """

    _probe = "square_avg"

    def __init__(self, params: Iterable[Any], lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0, *, maximize: bool = False) -> None:
        super().__init__(params, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)

    @classmethod
    def _check_hyperparameters(cls, hyper: Dict[str, Any]) -> Dict[str, Any]:
        hyper = super()._check_hyperparameters(hyper)
        hyper["rho"] = check_float("rho value", hyper["rho"], high=1.0)
        hyper["eps"] = check_float("epsilon value", hyper["eps"])
        hyper["weight_decay"] = check_float("weight_decay value", hyper["weight_decay"])
        hyper["maximize"] = check_bool("maximize", hyper["maximize"])
        return hyper

    def _state_keys(self, hyper: Mapping[str, Any]) -> frozenset:
        return frozenset({"step", "square_avg", "acc_delta"})

    def _update(self, p: Parameter, state: Dict[str, Any], group: Mapping[str, Any], xp: ModuleType,
                fast: bool) -> None:
        if not state:  # v = u = 0
            state["step"] = 0
            state["square_avg"] = xp.zeros(p.value.shape, dtype=p.value.dtype)
            state["acc_delta"] = xp.zeros(p.value.shape, dtype=p.value.dtype)
        state["step"] += 1
        rho, eps = group["rho"], group["eps"]
        if fast:  # torch's operations in place on three scratch arrays
            updates.adadelta_update(p.value, p.grad, state["square_avg"], state["acc_delta"],
                                    self._scratch.take(p.value, 3), group["lr"], rho, eps, group["weight_decay"],
                                    group["maximize"])
            return
        g = self._gradient(p, group["weight_decay"], group["maximize"])  # g = ±∇ + λθ
        v, u = state["square_avg"], state["acc_delta"]
        v[...] = rho * v + (1 - rho) * g * g  # v = ρ v + (1 − ρ) g²
        delta = xp.sqrt(u + eps) / xp.sqrt(v + eps) * g  # Δ = √(u + ε) / √(v + ε) · g
        u[...] = rho * u + (1 - rho) * delta * delta  # u = ρ u + (1 − ρ) Δ²
        p.value -= group["lr"] * delta  # θ = θ − γ Δ
