r"""Gradient checking: how the library proves itself, usable on any node.

Three independent views of the same derivative are compared:

* ``backward(g)``, the node's vector-Jacobian product :math:`J^\top g`;
* ``jacobian()``, the node's dense Jacobian :math:`J` (contracted with ``g``);
* central finite differences in float64,
  :math:`\partial y / \partial x_j \approx (f(x + \varepsilon e_j) - f(x - \varepsilon e_j)) / 2\varepsilon`.

Parameter gradients are checked the same way, by perturbing each parameter
value.  :func:`sympy_jacobian` adds a fourth, symbolic view (optional SymPy).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import extras
from .context import as_float_array
from .criterion import Criterion
from .node import Node

__all__ = [
    "Comparison",
    "GradcheckReport",
    "assert_gradients",
    "check_node",
    "compare",
    "numerical_jacobian",
    "sympy_jacobian",
]


def numerical_jacobian(f: Callable[[np.ndarray], Any], x: Any, eps: float = 1e-6) -> np.ndarray:
    r"""Central-difference Jacobian of ``f`` at ``x``, in float64, shape ``y.shape + x.shape``."""
    x = np.array(as_float_array(x), dtype=np.float64, copy=True, order="C")  # C order: flat is a view of x
    y_shape = np.shape(f(x.copy()))
    jac = np.empty(y_shape + (x.size,), dtype=np.float64)
    flat = x.reshape(-1)
    for j in range(x.size):
        original = flat[j]
        flat[j] = original + eps
        plus = np.asarray(f(x.copy()), dtype=np.float64)
        flat[j] = original - eps
        minus = np.asarray(f(x.copy()), dtype=np.float64)
        flat[j] = original
        jac[..., j] = (plus - minus) / (2 * eps)
    return jac.reshape(y_shape + x.shape)


@dataclass
class Comparison:
    """One comparison of two arrays: the largest absolute and relative differences."""

    name: str
    max_abs: float
    max_rel: float
    ok: bool

    @classmethod
    def of(cls, name: str, actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float) -> "Comparison":
        actual = np.asarray(actual, dtype=np.float64)
        expected = np.asarray(expected, dtype=np.float64)
        if actual.shape != expected.shape:
            raise ValueError(f"{name}: shapes differ, {actual.shape} against {expected.shape}")
        diff = np.abs(actual - expected)
        scale = np.abs(expected)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(diff == 0, 0.0, diff / scale)
        ok = bool(np.all(diff <= atol + rtol * scale))
        max_abs = float(diff.max()) if diff.size else 0.0
        max_rel = float(rel.max()) if rel.size else 0.0
        return cls(name, max_abs, max_rel, ok)


@dataclass
class GradcheckReport:
    """The result of :func:`check_node`; ``ok`` is true when every comparison passed."""

    node: str
    comparisons: List[Comparison] = field(default_factory=list)
    atol: float = 1e-6
    rtol: float = 1e-5

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons)

    def __repr__(self) -> str:
        width = max([len(c.name) for c in self.comparisons] + [10])
        lines = [
            f"gradient check of {self.node} (atol={self.atol:g}, rtol={self.rtol:g}): "
            + ("ok" if self.ok else "FAILED"),
            f"  {'comparison':<{width}}  {'max abs err':>12}  {'max rel err':>12}  result",
        ]
        for c in self.comparisons:
            lines.append(
                f"  {c.name:<{width}}  {c.max_abs:>12.3e}  {c.max_rel:>12.3e}  {'ok' if c.ok else 'FAILED'}"
            )
        return "\n".join(lines)

    __str__ = __repr__


def _runner(node: Any, target: Any) -> Callable[..., Any]:
    """``run`` with the state left alone: the node's own for a layer, with ``target`` held fixed for a loss."""
    if target is None and not isinstance(node, Criterion):
        return lambda *xs: node.run(*xs, update_state=False)
    return lambda x: node.run(x, target, update_state=False)


def _inputs_of(node: Any, x: Any) -> Tuple[np.ndarray, ...]:
    """The inputs in float64: ``x`` itself for one input, a sequence of ``num_inputs`` arrays for several."""
    count = getattr(node, "num_inputs", 1)
    if count == 1:
        return (np.array(as_float_array(x), dtype=np.float64),)
    if not isinstance(x, (tuple, list)) or len(x) != count:
        raise ValueError(f"{type(node).__name__} takes {count} inputs: give x as a tuple of {count} arrays")
    constant = getattr(node, "constant_inputs", ())
    return tuple(np.asarray(v) if i in constant else np.array(as_float_array(v, f"input {i}"), dtype=np.float64)
                 for i, v in enumerate(x))


def check_node(
    node: Node,
    x: Any,
    dL_dy: Optional[Any] = None,
    *,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    eps: float = 1e-6,
    rng: Optional[np.random.Generator] = None,
    parameters: bool = True,
    target: Any = None,
) -> GradcheckReport:
    r"""Check a node's backward, its Jacobian and finite differences against each other, in float64.

    ``dL_dy`` defaults to a random upstream gradient drawn from ``rng`` (a
    tuple, one per output, for a node with several outputs).  For every
    input :math:`x_i` (``x`` is a tuple of them for a node with several
    inputs): ``backward_from`` against :math:`\sum_o g_o \cdot J_{o,i}` from
    ``jacobian_from``, and each Jacobian block against
    :func:`numerical_jacobian`; with ``parameters=True``, each parameter's
    accumulated gradient against finite differences of
    :math:`\sum_o\langle g_o, f_o(x)\rangle`.  Only the context calls are
    used, with ``update_state=False``: the node's pending pass and state are
    untouched and its parameters' gradients are restored afterwards.  For a
    loss (a :class:`~nn_from_scratch.node.Criterion`), pass ``target``: it is
    held fixed while the prediction ``x`` varies.  A stochastic node (dropout
    in training mode) must be put in eval mode or checked with a fixed mask.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    run = _runner(node, target)
    xs = _inputs_of(node, x) if target is None else _inputs_of(None, x)
    constant = getattr(node, "constant_inputs", ())
    report = GradcheckReport(node=repr(node), atol=atol, rtol=rtol)
    params = list(node.named_parameters()) if hasattr(node, "named_parameters") else []
    saved_grads = [p.grad.copy() for _, p in params]
    try:
        ctx = run(*xs)
        several = isinstance(ctx.y, tuple)
        ys = ctx.y if several else (np.asarray(ctx.y),)
        gs = _output_grads(dL_dy, ys, several, rng)
        g = gs if several else gs[0]
        for _, p in params:
            p.zero_grad()
        dxs = _per_input(node.backward_from(ctx, g), len(xs), "backward_from")
        param_grads = [p.grad.copy() for _, p in params]
        jac = node.jacobian_from(ctx)
        blocks = [_per_input(block, len(xs), "jacobian_from") for block in (jac if several else (jac,))]
        if len(blocks) != len(ys):
            raise ValueError(f"{type(node).__name__}.jacobian_from gave {len(blocks)} blocks for {len(ys)} outputs")
        for i, xi in enumerate(xs):
            if i in constant:
                continue
            which = "" if len(xs) == 1 else f" (input {i})"
            expected_dx = sum(np.tensordot(gs[o], blocks[o][i], axes=gs[o].ndim) for o in range(len(ys)))
            report.comparisons.append(_compare_gradient(f"backward vs Jᵀg{which}", dxs[i], expected_dx, atol, rtol))
            for o in range(len(ys)):
                output = "" if len(ys) == 1 else f" of output {o}"

                def f(v: np.ndarray, i: int = i, o: int = o) -> Any:
                    y = run(*xs[:i], v, *xs[i + 1:]).y
                    return y[o] if several else y

                numeric = numerical_jacobian(f, xi, eps)
                report.comparisons.append(
                    Comparison.of(f"jacobian{output}{which} vs finite diff.", blocks[o][i], numeric, atol, rtol))
        if parameters:
            def pairing() -> float:
                y = run(*xs).y
                return float(sum(np.sum(go * np.asarray(yo)) for go, yo in zip(gs, y if several else (y,))))

            for (name, p), grad in zip(params, param_grads):
                numeric_grad = _numerical_parameter_grad(pairing, p, eps)
                report.comparisons.append(Comparison.of(f"d/d {name} vs finite diff.", grad, numeric_grad, atol, rtol))
    finally:
        for (_, p), grad in zip(params, saved_grads):
            p.edit_grad()[...] = grad
    return report


def _output_grads(dL_dy: Any, ys: Sequence[np.ndarray], several: bool,
                  rng: np.random.Generator) -> Tuple[np.ndarray, ...]:
    """The upstream gradients in float64, one per output: random when not given, a given None taken as zero."""
    if dL_dy is None:
        return tuple(rng.standard_normal(np.shape(y)) for y in ys)
    given = dL_dy if several else (dL_dy,)
    if several and (not isinstance(dL_dy, (tuple, list)) or len(dL_dy) != len(ys)):
        raise ValueError(f"dL_dy must be a tuple of {len(ys)} gradients, one per output (None for zero)")
    return tuple(np.zeros(np.shape(y)) if g is None else np.asarray(as_float_array(g, "dL_dy"), dtype=np.float64)
                 for g, y in zip(given, ys))


def _per_input(value: Any, count: int, what: str) -> Tuple[Any, ...]:
    """A gradient or Jacobian of the contract (one array for one input, a tuple for several) as a tuple."""
    if count == 1:
        return (value,)
    if not isinstance(value, (tuple, list)) or len(value) != count:
        raise ValueError(f"{what} must give a tuple of {count} parts, one per input, got {type(value).__name__}")
    return tuple(value)


def _compare_gradient(name: str, actual: Any, expected: np.ndarray, atol: float, rtol: float) -> Comparison:
    """:meth:`Comparison.of`, with a missing gradient (None) for an input that has one counted as a failure."""
    if actual is None:
        return Comparison(name, float("inf"), float("inf"), False)
    return Comparison.of(name, actual, expected, atol, rtol)


def _numerical_parameter_grad(pairing: Callable[[], float], param: Any, eps: float) -> np.ndarray:
    """Finite differences of ``pairing()`` (``<g, f(x)>``) with respect to one parameter, restoring its value exactly."""
    original = param.value.copy()
    flat = param.value.reshape(-1)
    grad = np.empty(param.value.size, dtype=np.float64)
    try:
        for j in range(flat.size):
            flat[j] = original.flat[j] + eps
            plus = pairing()
            flat[j] = original.flat[j] - eps
            minus = pairing()
            flat[j] = original.flat[j]
            grad[j] = (plus - minus) / (2 * eps)
    finally:
        param.value[...] = original
    return grad.reshape(param.value.shape)


def assert_gradients(node: Node, x: Any, dL_dy: Optional[Any] = None, **kwargs: Any) -> GradcheckReport:
    """Like :func:`check_node`, but raise ``AssertionError`` with the report's table when a check fails."""
    report = check_node(node, x, dL_dy, **kwargs)
    if not report.ok:
        raise AssertionError("\n" + repr(report))
    return report


def compare(
    node_a: Node,
    node_b: Node,
    x: Any,
    dL_dy: Optional[Any] = None,
    *,
    atol: float = 1e-9,
    rtol: float = 1e-7,
) -> GradcheckReport:
    r"""Compare two nodes that should compute the same function: outputs, ``backward(g)`` and ``jacobian()``.

    Typically a hand-written node against its symbolic twin
    (:class:`~nn_from_scratch.symbolic.SymbolicNode`).  ``x`` is taken in
    float64; ``dL_dy`` defaults to a standard normal upstream gradient (seed 0).
    ``node_b`` is the reference: relative errors are measured against it.
    Only the context calls are used: both nodes' pending passes stay as they
    were, and their parameters' gradients are restored afterwards.  Shapes that differ raise ``ValueError``.
    For several inputs (``x`` a tuple) or outputs, each output, each input's
    gradient and each Jacobian block is its own comparison, named by its
    input and output; an output's ``dL_dy`` may be None (zero).
    """
    xs = _inputs_of(node_a, x)
    report = GradcheckReport(node=f"{node_a!r} against {node_b!r}", atol=atol, rtol=rtol)
    params = [p for node in (node_a, node_b) for p in node.parameters()]
    saved_grads = [p.grad.copy() for p in params]
    try:
        ctx_a, ctx_b = node_a.run(*xs, update_state=False), node_b.run(*xs, update_state=False)
        several = isinstance(ctx_b.y, tuple)
        ys_a = ctx_a.y if several and isinstance(ctx_a.y, tuple) else (ctx_a.y,)
        ys_b = ctx_b.y if several else (ctx_b.y,)
        if len(ys_a) != len(ys_b):
            raise ValueError(f"the nodes give {len(ys_a)} and {len(ys_b)} outputs")
        for o, (y_a, y_b) in enumerate(zip(ys_a, ys_b)):
            report.comparisons.append(Comparison.of("forward" + (f" (output {o})" if several else ""), y_a, y_b,
                                                    atol, rtol))
        gs = _output_grads(dL_dy, ys_b, several, np.random.default_rng(0))
        g = gs if several else gs[0]
        count = len(xs)
        dx_a = _per_input(node_a.backward_from(ctx_a, g), count, "backward_from")
        dx_b = _per_input(node_b.backward_from(ctx_b, g), count, "backward_from")
        jac_a = node_a.jacobian_from(ctx_a)
        jac_b = node_b.jacobian_from(ctx_b)
        blocks_a = [_per_input(j, count, "jacobian_from") for j in (jac_a if several else (jac_a,))]
        blocks_b = [_per_input(j, count, "jacobian_from") for j in (jac_b if several else (jac_b,))]
        for i in range(count):
            which = "" if count == 1 else f" (input {i})"
            if dx_b[i] is not None or dx_a[i] is not None:
                report.comparisons.append(_compare_gradient(f"backward{which}", dx_a[i], dx_b[i], atol, rtol))
            for o in range(len(ys_b)):
                if blocks_b[o][i] is not None or blocks_a[o][i] is not None:
                    output = f" of output {o}" if several else ""
                    report.comparisons.append(
                        _compare_gradient(f"jacobian{output}{which}", blocks_a[o][i], blocks_b[o][i], atol, rtol))
    finally:
        for p, grad in zip(params, saved_grads):
            p.edit_grad()[...] = grad
    return report


def sympy_jacobian(build: Callable[[Sequence[Any]], Any], x: Any) -> np.ndarray:
    r"""The Jacobian of a SymPy formula at ``x``, the course notebook's check as a function.

    ``build`` maps a tuple of real symbols :math:`(x_0, \dots, x_{n-1})` to a SymPy
    ``Matrix`` (or a sequence of expressions) of the outputs.  For ``x`` of
    shape ``(n,)`` the result has shape ``(m, n)``, with
    ``J[i, j]`` :math:`= \partial y_i / \partial x_j`; for ``(..., n)`` the
    formula is applied to each row and the per-row Jacobians are stacked as
    ``(..., m, n)``.  Needs the optional ``symbolic`` extra (SymPy).
    """
    sympy = extras.require("sympy", "sympy_jacobian")
    x = np.asarray(as_float_array(x), dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"sympy_jacobian needs x of shape (..., n) with n >= 1, got {x.shape}")
    n = x.shape[-1]
    symbols = sympy.symbols(f"x_0:{n}", real=True)
    outputs = sympy.Matrix(build(symbols))
    if outputs.shape[1] != 1:
        outputs = outputs.reshape(outputs.shape[0] * outputs.shape[1], 1)
    compiled = sympy.lambdify(symbols, outputs.jacobian(symbols), modules="numpy")
    rows = x.reshape(-1, n)
    jacobians = np.stack([np.asarray(compiled(*row), dtype=np.float64) for row in rows])
    return jacobians.reshape(x.shape[:-1] + jacobians.shape[1:])
