"""Adam and AdamW as in torch.optim."""
from __future__ import annotations

from types import ModuleType
from typing import Any, Dict, Iterable, Mapping, Tuple

from ..engine import updates
from ..parameter import Parameter
from .arguments import check_betas, check_bool, check_float
from .base import Optimizer

__all__ = ["Adam", "AdamW"]


class _Moments(Optimizer):
    """What Adam and its relatives share: betas, eps, weight decay and maximize, and moments made at the first step."""

    _probe = "exp_avg"
    #: The buffers besides ``exp_avg`` (zeros at the first step).
    _second: Tuple[str, ...] = ("exp_avg_sq",)

    @classmethod
    def _check_hyperparameters(cls, hyper: Dict[str, Any]) -> Dict[str, Any]:
        hyper = super()._check_hyperparameters(hyper)
        hyper["betas"] = check_betas(hyper["betas"])
        hyper["eps"] = check_float("epsilon value", hyper["eps"])
        hyper["weight_decay"] = check_float("weight_decay value", hyper["weight_decay"])
        hyper["maximize"] = check_bool("maximize", hyper["maximize"])
        if "decoupled_weight_decay" in hyper:
            hyper["decoupled_weight_decay"] = check_bool("decoupled_weight_decay", hyper["decoupled_weight_decay"])
        return hyper

    def _state_keys(self, hyper: Mapping[str, Any]) -> frozenset:
        return frozenset({"step", "exp_avg", *self._second, *self._scalar_state})

    def _start(self, p: Parameter, state: Dict[str, Any], xp: ModuleType) -> int:
        """Make the state at the first step; count this step; return its number t."""
        if not state:
            state["step"] = 0
            for name in ("exp_avg",) + self._second:
                state[name] = xp.zeros(p.value.shape, dtype=p.value.dtype)
        state["step"] += 1
        return state["step"]

    def _decayed_gradient(self, p: Parameter, group: Mapping[str, Any]) -> Any:
        r""":math:`g = \pm\nabla + \lambda\theta`, or with decoupled decay
        :math:`\theta \leftarrow (1-\gamma\lambda)\theta` first and :math:`g = \pm\nabla`."""
        weight_decay = group["weight_decay"]
        if group.get("decoupled_weight_decay") and weight_decay != 0:
            p.value *= 1 - group["lr"] * weight_decay  # θ = (1 − γλ) θ
            return self._gradient(p, 0.0, group["maximize"])
        return self._gradient(p, weight_decay, group["maximize"])


# --------------------------------------------------------------------------- #
# Adam / AdamW
# --------------------------------------------------------------------------- #
class Adam(_Moments):
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
    :math:`\sqrt{1-\beta_2^t}`, and so does this class).  With
    ``decoupled_weight_decay=True`` (torch 2.13's option) the decay is
    AdamW's instead: :math:`\theta_{t-1} \leftarrow (1-\gamma\lambda)\,\theta_{t-1}`
    before the step, and :math:`g_t` without :math:`\lambda\theta_{t-1}`
    (:class:`AdamW` is this with decay 1e-2 by default).

    :math:`\theta`, :math:`g`, :math:`m`, :math:`v` and :math:`v^{\max}`
    have the parameter's shape and dtype; every operation is elementwise.
    ``_update`` is these lines in the parameter's array namespace; with the
    engine on and NumPy arrays,
    :func:`~nn_from_scratch.engine.updates.adam_update` runs torch's
    operations in place, which form :math:`m_t` as
    :math:`m_{t-1} + (1-\beta_1)(g_t - m_{t-1})` (``lerp_``): the same
    number to rounding.
    """

    _later_hyperparameters = {"decoupled_weight_decay": False}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)

    @classmethod
    def _check_hyperparameters(cls, hyper: Dict[str, Any]) -> Dict[str, Any]:
        hyper = super()._check_hyperparameters(hyper)
        hyper["amsgrad"] = check_bool("amsgrad", hyper["amsgrad"])
        return hyper

    def _state_keys(self, hyper: Mapping[str, Any]) -> frozenset:
        keys = {"step", "exp_avg", "exp_avg_sq"}
        if hyper["amsgrad"]:
            keys.add("max_exp_avg_sq")
        return frozenset(keys)

    def _update(self, p: Parameter, state: Dict[str, Any], group: Mapping[str, Any], xp: ModuleType,
                fast: bool) -> None:
        if not state:  # t = 0, m = v = v_max = 0
            state["step"] = 0
            state["exp_avg"] = xp.zeros(p.value.shape, dtype=p.value.dtype)
            state["exp_avg_sq"] = xp.zeros(p.value.shape, dtype=p.value.dtype)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros(p.value.shape, dtype=p.value.dtype)
        state["step"] += 1
        lr, weight_decay, decoupled = group["lr"], group["weight_decay"], group["decoupled_weight_decay"]
        if fast:  # torch's operations in place on scratch (its lerp_ for the first moment)
            updates.adam_update(p.value, p.grad, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"),
                                state["step"], self._scratch.take(p.value), lr, group["betas"],
                                group["eps"], weight_decay, decoupled, group["maximize"])
            return
        t, (beta1, beta2) = state["step"], group["betas"]
        g = self._decayed_gradient(p, group)  # g = ±∇ + λθ (Adam), or θ = (1 − γλ) θ and g = ±∇ (AdamW)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m[...] = beta1 * m + (1 - beta1) * g  # m = β1 m + (1 − β1) g
        v[...] = beta2 * v + (1 - beta2) * g * g  # v = β2 v + (1 − β2) g²
        if group["amsgrad"]:
            v_max = state["max_exp_avg_sq"]
            v_max[...] = xp.maximum(v_max, v)  # v_max = max(v_max, v)
            v = v_max
        step_size = lr / (1 - beta1**t)  # γ / (1 − β1ᵗ)
        denominator = xp.sqrt(v) / (1 - beta2**t) ** 0.5 + group["eps"]  # √v / √(1 − β2ᵗ) + ε
        p.value -= step_size * (m / denominator)  # θ = θ − γ/(1 − β1ᵗ) · m / (√v/√(1 − β2ᵗ) + ε)

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

    _later_hyperparameters = {"decoupled_weight_decay": True}

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        """Adam's arguments; only the default weight decay differs (1e-2, as torch's AdamW), and the decay is
        decoupled (torch's AdamW passes ``decoupled_weight_decay=True`` to Adam, as this class does)."""
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
