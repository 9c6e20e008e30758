r"""L-BFGS as ``torch.optim.LBFGS``: quasi-Newton steps on the flat parameter vector, with a strong-Wolfe line search.

The whole method works on :math:`x = \mathrm{vec}(\theta)`
(:mod:`~nn_from_scratch.optim.vectors`): its gradient :math:`g`, the last
``history_size`` pairs :math:`s_i = x_{i+1} - x_i`, :math:`y_i = g_{i+1} -
g_i` with :math:`\rho_i = 1/(y_i^\top s_i)`, and the direction from the
two-loop recursion (Nocedal and Wright, algorithm 7.4):

.. math::
    \begin{aligned}
    q &\leftarrow -g; \quad \alpha_i \leftarrow \rho_i\, s_i^\top q,\;
         q \leftarrow q - \alpha_i y_i \quad (i = k-1, \dots, 0) \\
    r &\leftarrow H_0\, q, \quad H_0 = \frac{y_{k-1}^\top s_{k-1}}{y_{k-1}^\top y_{k-1}}; \quad
         \beta_i \leftarrow \rho_i\, y_i^\top r,\; r \leftarrow r + (\alpha_i - \beta_i)\, s_i
         \quad (i = 0, \dots, k-1) \\
    d &\leftarrow r \approx -H g, \qquad x \leftarrow x + t\, d
    \end{aligned}

A pair enters the history only when :math:`y^\top s > 10^{-10}` (the
curvature condition).  The step :math:`t` is ``lr`` (the first iteration
:math:`\min(1, 1/\lVert g\rVert_1)\,\gamma`), or the strong-Wolfe line
search's (``line_search_fn="strong_wolfe"``: sufficient decrease
:math:`f(x + t d) \le f(x) + c_1 t\, g^\top d` and curvature
:math:`|g(x + t d)^\top d| \le c_2 |g^\top d|`, :math:`c_1 = 10^{-4}`,
:math:`c_2 = 0.9`, by bracketing and cubic interpolation, ported from
torch's ``_strong_wolfe`` and minFunc's).
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..backend import as_backend_array, namespace_of, numpy_dtype
from .arguments import as_scalar, check_count, check_float
from .base import Optimizer
from .schedulers import check_positive_int
from .vectors import common_namespace, flatten

__all__ = ["LBFGS"]

_ARRAYS = ("d", "prev_flat_grad", "old_dirs", "old_stps", "ro", "al")


def cubic_interpolate(x1: float, f1: float, g1: float, x2: float, f2: float, g2: float,
                      bounds: Optional[Tuple[float, float]] = None) -> float:
    """The minimiser of the cubic through two points with their values and slopes, kept within ``bounds``."""
    xmin_bound, xmax_bound = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def strong_wolfe(obj_func: Callable[[Any, float, Any], Tuple[float, Any]], x: Any, t: float, d: Any, f: float, g: Any,
                 gtd: float, xp: ModuleType, c1: float = 1e-4, c2: float = 0.9, tolerance_change: float = 1e-9,
                 max_ls: int = 25) -> Tuple[float, Any, float, int]:
    """Torch's strong-Wolfe line search along ``d`` from ``x``: ``(f_new, g_new, t, evaluations)``."""
    d_norm = float(xp.max(xp.abs(d)))
    g = xp.asarray(g, copy=True)
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = float(xp.vecdot(g_new, d))
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    bracket: List[float] = []
    bracket_f: List[float] = []
    bracket_g: List[Any] = []
    bracket_gtd: List[float] = []
    while ls_iter < max_ls:  # bracket an interval holding a point that satisfies the conditions
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, xp.asarray(g_new, copy=True)], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, xp.asarray(g_new, copy=True)], [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, xp.asarray(g_new, copy=True), gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(xp.vecdot(g_new, d))
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]

    # zoom: refine the bracket until a point satisfies the conditions
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:  # too close to an end of the bracket
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(xp.vecdot(g_new, d))
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = xp.asarray(g_new, copy=True), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = xp.asarray(g_new, copy=True), gtd_new
    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


class LBFGS(Optimizer):
    r"""L-BFGS (Liu and Nocedal, 1989), as ``torch.optim.LBFGS`` (see the module docstring for the method).

    ``step(closure)`` runs up to ``max_iter`` iterations and ``max_eval``
    evaluations of ``closure`` (which zeroes the gradients, runs forward and
    backward and returns the loss), stopping early when the largest
    gradient entry is at most ``tolerance_grad``, or a step or the change
    of the loss is below ``tolerance_change``; it returns the loss of the
    first evaluation.  As torch's, it takes one parameter group, and all
    parameters must share an array namespace (one flat vector).  Of
    parameters of several dtypes the vector takes the widest (as
    ``concat`` promotes), and each step is cast to its parameter's dtype
    (torch's ``add_`` refuses that cast).

    Without a closure, ``step()`` takes one iteration from the gradients
    already in ``.grad`` (those are the closure's one evaluation), which
    needs ``max_iter=1`` and no line search: that is how ``fit``, which
    computes the gradients itself, can drive it (stochastic L-BFGS).

    The state, torch's entries in the state of the first parameter, holds
    the history as arrays: ``old_dirs`` and ``old_stps`` stacked
    ``(k, n)`` (torch keeps lists of ``k`` vectors), ``ro`` ``(k,)`` and
    ``al`` ``(history_size,)``; ``t``, ``H_diag`` and ``prev_loss`` are
    Python numbers (``prev_loss`` None after a step without a closure).
    Its :meth:`state_dict` resumes a run exactly.
    """

    _several_groups = False

    def __init__(self, params: Any, lr: float = 1, max_iter: int = 20, max_eval: Optional[int] = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: Optional[str] = None) -> None:
        if max_eval is None:
            max_eval = check_positive_int("max_iter", max_iter) * 5 // 4
        super().__init__(params, lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                         tolerance_change=tolerance_change, history_size=history_size, line_search_fn=line_search_fn)
        common_namespace([p.value for p in self.params], "LBFGS")

    @classmethod
    def _check_hyperparameters(cls, hyper: Dict[str, Any]) -> Dict[str, Any]:
        hyper = super()._check_hyperparameters(hyper)
        hyper["max_iter"] = check_positive_int("max_iter", hyper["max_iter"])
        hyper["max_eval"] = check_positive_int("max_eval", hyper["max_eval"])
        hyper["tolerance_grad"] = check_float("tolerance_grad", hyper["tolerance_grad"])
        hyper["tolerance_change"] = check_float("tolerance_change", hyper["tolerance_change"])
        hyper["history_size"] = check_positive_int("history_size", hyper["history_size"])
        line_search = as_scalar(hyper["line_search_fn"])
        if line_search not in (None, "strong_wolfe"):
            raise ValueError(f"only 'strong_wolfe' is supported as line_search_fn (or None), got {line_search!r}")
        hyper["line_search_fn"] = line_search
        return hyper

    # -- the flat vector ----------------------------------------------------
    def _flat_dtype(self, xp: ModuleType) -> Any:
        """The dtype of the flat vector: the parameters' own, or the widest of theirs."""
        return xp.result_type(*[p.value.dtype for p in self.params])

    def _gather_flat_grad(self, xp: ModuleType) -> Any:
        self._checked_namespaces()  # every gradient an array of its parameter's shape and dtype
        dtype = self._flat_dtype(xp)
        return flatten([xp.astype(p.grad, dtype, copy=False) for p in self.params], xp)

    def _add_grad(self, step_size: float, update: Any, xp: ModuleType) -> None:
        """``x = x + step_size * update``, piece by piece into the parameters (in each one's dtype)."""
        offset = 0
        for p in self.params:
            size = math.prod(p.value.shape)
            step = step_size * xp.reshape(update[offset:offset + size], tuple(p.value.shape))
            p.value += step if step.dtype == p.value.dtype else xp.astype(step, p.value.dtype)
            offset += size

    def _directional_evaluate(self, closure: Callable[[], Any], x: Sequence[Any], t: float, d: Any,
                              xp: ModuleType) -> Tuple[float, Any]:
        """The loss and flat gradient at ``x + t d``; the parameters are put back to ``x``."""
        self._add_grad(t, d, xp)
        loss = float(closure())
        flat_grad = self._gather_flat_grad(xp)
        for p, value in zip(self.params, x):
            p.value[...] = value
        return loss, flat_grad

    # -- the step -----------------------------------------------------------
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:  # noqa: C901 - torch's one loop
        """Run L-BFGS iterations with ``closure`` (see the class docstring); returns its first loss."""
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        line_search_fn, history_size = group["line_search_fn"], group["history_size"]
        if closure is None and (max_iter != 1 or line_search_fn is not None):
            raise TypeError("LBFGS.step needs a closure that zeroes the gradients, runs forward and backward and "
                            "returns the loss; without one it can take only one iteration from the gradients in "
                            "grad: build it with max_iter=1 and no line search for that")
        if closure is not None and not callable(closure):
            raise TypeError(f"closure must be callable (re-evaluate the model and return the loss), got "
                            f"{type(closure).__name__}")
        xp = namespace_of(self.params[0].value)
        state = self.state[0]
        if closure is None:
            self._gather_flat_grad(xp)  # a bad gradient is refused before the state changes
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = closure() if closure is not None else None
        loss = float(orig_loss) if closure is not None else None
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._gather_flat_grad(xp)
        if flat_grad.shape[0] == 0 or float(xp.max(xp.abs(flat_grad))) <= tolerance_grad:
            self.step_count += 1
            return orig_loss

        d, t, H_diag = state.get("d"), state.get("t"), state.get("H_diag")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")
        n, dtype = flat_grad.shape[0], flat_grad.dtype
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:  # the first direction: steepest descent
                d = -flat_grad
                old_dirs, old_stps = xp.zeros((0, n), dtype=dtype), xp.zeros((0, n), dtype=dtype)
                ro, H_diag = xp.zeros((0,), dtype=dtype), 1.0
            else:
                y = flat_grad - prev_flat_grad  # y = g_{k+1} − g_k
                s = d * t  # s = x_{k+1} − x_k
                ys = float(xp.vecdot(y, s))
                if ys > 1e-10:  # the curvature condition: remember the pair
                    if old_dirs.shape[0] == history_size:
                        old_dirs, old_stps, ro = old_dirs[1:, ...], old_stps[1:, ...], ro[1:]
                    old_dirs = xp.concat([old_dirs, xp.reshape(y, (1, n))])
                    old_stps = xp.concat([old_stps, xp.reshape(s, (1, n))])
                    ro = xp.concat([ro, xp.asarray([1.0 / ys], dtype=dtype)])
                    H_diag = ys / float(xp.vecdot(y, y))  # H_0 = yᵀs / yᵀy
                if "al" not in state:
                    state["al"] = xp.zeros((history_size,), dtype=dtype)
                al = state["al"]
                q = -flat_grad
                for i in range(old_dirs.shape[0] - 1, -1, -1):  # α_i = ρ_i s_iᵀ q; q = q − α_i y_i
                    al[i] = xp.vecdot(old_stps[i, ...], q) * ro[i]
                    q = q - al[i] * old_dirs[i, ...]
                r = q * H_diag  # r = H_0 q
                for i in range(old_dirs.shape[0]):  # β_i = ρ_i y_iᵀ r; r = r + (α_i − β_i) s_i
                    be_i = xp.vecdot(old_dirs[i, ...], r) * ro[i]
                    r = r + (al[i] - be_i) * old_stps[i, ...]
                d = r
            prev_flat_grad = xp.asarray(flat_grad, copy=True)
            prev_loss = loss
            if state["n_iter"] == 1:
                t = min(1.0, float(1.0 / xp.sum(xp.abs(flat_grad)))) * lr
            else:
                t = lr
            gtd = float(xp.vecdot(flat_grad, d))  # the directional derivative gᵀd
            if gtd > -tolerance_change:
                break
            ls_func_evals = 0
            if line_search_fn is not None:
                x_init = [xp.asarray(p.value, copy=True) for p in self.params]

                def obj_func(x: Any, step: float, direction: Any) -> Tuple[float, Any]:
                    return self._directional_evaluate(closure, x, step, direction, xp)

                loss, flat_grad, t, ls_func_evals = strong_wolfe(obj_func, x_init, t, d, loss, flat_grad, gtd, xp,
                                                                 max_ls=max_eval - current_evals)
                self._add_grad(t, d, xp)
                opt_cond = float(xp.max(xp.abs(flat_grad))) <= tolerance_grad
            else:
                self._add_grad(t, d, xp)  # x = x + t d
                opt_cond = False
                if n_iter != max_iter:  # evaluate again only if another iteration follows
                    loss = float(closure())
                    flat_grad = self._gather_flat_grad(xp)
                    opt_cond = float(xp.max(xp.abs(flat_grad))) <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals
            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if float(xp.max(xp.abs(d * t))) <= tolerance_change:  # lack of progress
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=H_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        self.step_count += 1
        return orig_loss

    # -- checkpoints --------------------------------------------------------
    def _restored_entries(self, index: int, entries: Mapping[str, Any], hyper: Mapping[str, Any]) -> Dict[str, Any]:
        """L-BFGS's state, all in the first parameter's: its counts, numbers and flat arrays, checked."""
        if index != 0:
            raise ValueError(f"LBFGS keeps its state in the first parameter's; the state dict has some for "
                             f"parameter {index}")
        counts, full = {"func_evals", "n_iter"}, {"func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro",
                                                   "H_diag", "prev_flat_grad", "prev_loss"}
        if not (set(entries) == counts or set(entries) in (full, full | {"al"})):
            raise ValueError(f"the LBFGS state has entries {sorted(entries)}, expected {sorted(counts)} or "
                             f"{sorted(full)} (and 'al' after a second iteration)")
        xp = namespace_of(self.params[0].value)
        n = sum(math.prod(p.value.shape) for p in self.params)
        dtype = np.result_type(*[numpy_dtype(p.value) for p in self.params])
        restored: Dict[str, Any] = {key: check_count(f"LBFGS {key}", entries[key]) for key in counts}
        if set(entries) == counts:
            return restored
        k = entries["ro"].shape[0] if isinstance(entries["ro"], np.ndarray) and entries["ro"].ndim == 1 else -1
        if not 0 <= k <= hyper["history_size"]:
            raise ValueError(f"the LBFGS state's ro must be a 1-D array of at most history_size="
                             f"{hyper['history_size']} numbers")
        shapes = {"d": (n,), "prev_flat_grad": (n,), "old_dirs": (k, n), "old_stps": (k, n), "ro": (k,),
                  "al": (hyper["history_size"],)}
        for key in _ARRAYS:
            if key not in entries:
                continue
            v = entries[key]
            if not isinstance(v, np.ndarray) or v.shape != shapes[key] or v.dtype != dtype:
                described = f"{v.dtype} array of shape {v.shape}" if isinstance(v, np.ndarray) else type(v).__name__
                raise ValueError(f"the LBFGS state's {key} must be a {dtype} array of shape {shapes[key]}, got "
                                 f"{described}")
            restored[key] = as_backend_array(np.array(v, copy=True, order="C"), xp)
        for key in ("t", "H_diag"):
            restored[key] = check_float(f"LBFGS {key}", entries[key], low=None)
        prev_loss = as_scalar(entries["prev_loss"])
        restored["prev_loss"] = None if prev_loss is None else check_float("LBFGS prev_loss", prev_loss, low=None)
        return restored
