"""Stochastic gradient descent, with momentum and Nesterov momentum as in torch.optim.SGD."""
from __future__ import annotations

from types import ModuleType
from typing import Any, Dict, Iterable, Mapping

from ..engine import updates
from ..parameter import Parameter
from .arguments import check_bool, check_float
from .base import Optimizer

__all__ = ["SGD", "GradientDescent"]


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

    :math:`\theta`, :math:`g` and :math:`b` have the parameter's shape and
    dtype; every operation is elementwise.  ``_update`` is these lines in
    the parameter's array namespace; with the engine on and NumPy arrays,
    :func:`~nn_from_scratch.engine.updates.sgd_update` runs the same
    operations in place (the same bits).
    """

    _probe = "momentum_buffer"

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
        hyper["momentum"] = check_float("momentum value", hyper["momentum"])
        hyper["dampening"] = check_float("dampening value", hyper["dampening"], high=1.0)
        hyper["nesterov"] = check_bool("nesterov", hyper["nesterov"])
        hyper["weight_decay"] = check_float("weight_decay value", hyper["weight_decay"])
        hyper["maximize"] = check_bool("maximize", hyper["maximize"])
        if hyper["nesterov"] and (hyper["momentum"] <= 0 or hyper["dampening"] != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum > 0 and zero dampening "
                f"(got momentum={hyper['momentum']!r}, dampening={hyper['dampening']!r})"
            )
        return hyper

    def _state_keys(self, hyper: Mapping[str, Any]) -> frozenset:
        return frozenset({"momentum_buffer"}) if hyper["momentum"] != 0 else frozenset()

    def _update(self, p: Parameter, state: Dict[str, Any], group: Mapping[str, Any], xp: ModuleType,
                fast: bool) -> None:
        mu = group["momentum"]
        if fast:  # torch's operations in place on scratch, the last subtraction in cache-sized blocks
            buffer = updates.sgd_update(p.value, p.grad, state.get("momentum_buffer"),
                                        self._scratch.take(p.value), group["lr"], mu, group["dampening"],
                                        group["nesterov"], group["weight_decay"], group["maximize"])
            if buffer is not None:
                state["momentum_buffer"] = buffer
            return
        g = self._gradient(p, group["weight_decay"], group["maximize"])  # g = ±∇ + λθ
        if mu != 0:
            b = state.get("momentum_buffer")
            if b is None:
                b = state["momentum_buffer"] = xp.asarray(g, copy=True)  # b = g on the first step
            else:
                b[...] = mu * b + (1 - group["dampening"]) * g  # b = μ b + (1 − τ) g
            g = g + mu * b if group["nesterov"] else b  # g + μ b (Nesterov) or b
        p.value -= group["lr"] * g  # θ = θ − γ g


class GradientDescent(SGD):
    r"""Plain (mini-batch) gradient descent, the course's name for momentum-free SGD.

    .. math::
        \theta_t \leftarrow \theta_{t-1} - \gamma\, \nabla_\theta f_t(\theta_{t-1})
    """

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        super().__init__(params, lr=lr)
