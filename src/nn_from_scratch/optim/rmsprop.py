"""RMSProp as in torch.optim.RMSprop."""
from __future__ import annotations

from types import ModuleType
from typing import Any, Dict, Iterable, Mapping

from ..engine import updates
from ..parameter import Parameter
from .arguments import check_bool, check_float
from .base import Optimizer

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

    :math:`\theta`, :math:`g`, :math:`v`, :math:`\bar g` and :math:`b` have
    the parameter's shape and dtype; every operation is elementwise.
    ``_update`` is these lines in the parameter's array namespace; with the
    engine on and NumPy arrays,
    :func:`~nn_from_scratch.engine.updates.rmsprop_update` runs torch's
    operations in place, which form :math:`\bar g_t` as
    :math:`\bar g_{t-1} + (1-\alpha)(g_t - \bar g_{t-1})` (``lerp_``): the
    same number to rounding.
    """

    _probe = "square_avg"

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
        hyper["alpha"] = check_float("alpha value", hyper["alpha"], high=1.0)
        hyper["eps"] = check_float("epsilon value", hyper["eps"])
        hyper["weight_decay"] = check_float("weight_decay value", hyper["weight_decay"])
        hyper["momentum"] = check_float("momentum value", hyper["momentum"])
        hyper["centered"] = check_bool("centered", hyper["centered"])
        hyper["maximize"] = check_bool("maximize", hyper["maximize"])
        return hyper

    def _state_keys(self, hyper: Mapping[str, Any]) -> frozenset:
        keys = {"step", "square_avg"}
        if hyper["momentum"] > 0:
            keys.add("momentum_buffer")
        if hyper["centered"]:
            keys.add("grad_avg")
        return frozenset(keys)

    def _update(self, p: Parameter, state: Dict[str, Any], group: Mapping[str, Any], xp: ModuleType,
                fast: bool) -> None:
        alpha, eps, mu, lr = group["alpha"], group["eps"], group["momentum"], group["lr"]
        if not state:  # v = ḡ = b = 0
            state["step"] = 0
            state["square_avg"] = xp.zeros(p.value.shape, dtype=p.value.dtype)
            if mu > 0:
                state["momentum_buffer"] = xp.zeros(p.value.shape, dtype=p.value.dtype)
            if group["centered"]:
                state["grad_avg"] = xp.zeros(p.value.shape, dtype=p.value.dtype)
        state["step"] += 1
        if fast:  # torch's operations in place on scratch (its lerp_ for the centred average)
            updates.rmsprop_update(p.value, p.grad, state["square_avg"], state.get("grad_avg"),
                                   state.get("momentum_buffer"), self._scratch.take(p.value), lr, alpha,
                                   eps, group["weight_decay"], mu, group["maximize"])
            return
        g = self._gradient(p, group["weight_decay"], group["maximize"])  # g = ±∇ + λθ
        v = state["square_avg"]
        v[...] = alpha * v + (1 - alpha) * g * g  # v = α v + (1 − α) g²
        if group["centered"]:
            g_avg = state["grad_avg"]
            g_avg[...] = alpha * g_avg + (1 - alpha) * g  # ḡ = α ḡ + (1 − α) g
            denominator = xp.sqrt(v - g_avg * g_avg) + eps  # √(v − ḡ²) + ε
        else:
            denominator = xp.sqrt(v) + eps  # √v + ε
        if mu > 0:
            b = state["momentum_buffer"]
            b[...] = mu * b + g / denominator  # b = μ b + g / (√ṽ + ε)
            p.value -= lr * b  # θ = θ − γ b
        else:
            p.value -= lr * (g / denominator)  # θ = θ − γ g / (√ṽ + ε)

RMSprop = RMSProp
