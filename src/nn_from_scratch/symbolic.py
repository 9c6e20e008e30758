r"""Nodes from formulas: write :math:`y = f(x)` in SymPy, get forward, Jacobian and backward for free.

:class:`SymbolicNode` takes a function that builds the outputs of one row
from SymPy symbols,

.. code-block:: python

    import sympy
    from nn_from_scratch.symbolic import SymbolicNode

    def softmax(x):
        e = [sympy.exp(v) for v in x]
        return sympy.Matrix(e) / sum(e)

    node = SymbolicNode(softmax, 3)          # a row-wise node (..., 3) -> (..., 3)
    node.jacobian_formula()                  # the 3 x 3 symbolic Jacobian (LaTeX in a notebook)

and derives everything the :class:`~nn_from_scratch.node.Node` contract asks
for: the symbolic Jacobian :math:`\partial y_i/\partial x_j`, the
vector-Jacobian product :math:`(J^\top g)_j = \sum_i g_i\,\partial y_i/\partial x_j`
and, for parameters :math:`\theta`, :math:`\sum_i g_i\,\partial y_i/\partial\theta`.
Each is compiled to NumPy by ``sympy.lambdify`` with common subexpression
elimination and evaluated on whole columns ``x[..., j]`` at once, so the node
works on any number of leading axes, in :class:`~nn_from_scratch.Sequential`,
under :func:`~nn_from_scratch.gradcheck.check_node` and in training.

The formulas are compiled as written: a softmax written as
:math:`e^{x_i}/\sum_k e^{x_k}` overflows for large inputs where the
hand-written :class:`~nn_from_scratch.nodes.SoftMax` (which subtracts the row
maximum) does not.  A symbolic twin is for checking and teaching; the
hand-written node is for speed and range.

Needs SymPy, an optional extra: ``pip install sympy`` (or ``pip install ".[symbolic]"`` from a checkout).
"""
from __future__ import annotations

import inspect
import keyword
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import extras
from .context import Context
from .node_shortcuts import RowwiseNode
from .nodes.activations import erf, erfc
from .parameter import Parameter

__all__ = ["SymbolicNode"]

def _import_sympy(what: str) -> Any:
    return extras.require("sympy", what)


def _default_name(formula: Callable[..., Any]) -> str:
    name = getattr(formula, "__name__", None)
    if not name or name == "<lambda>":
        return "formula"
    return name


class SymbolicNode(RowwiseNode):
    r"""A row-wise node ``(..., n) -> (..., m)`` defined by a SymPy formula.

    Parameters
    ----------
    formula:
        A callable ``formula(x, **params)``.  ``x`` is a tuple of ``n`` real
        SymPy symbols :math:`x_0, \dots, x_{n-1}`; each declared parameter
        arrives as a keyword argument: a real symbol for a scalar parameter, a
        tuple of real symbols :math:`a_0, a_1, \dots` for a 1-D one.  It
        returns the ``m`` outputs of one row: a SymPy ``Matrix`` with one row
        or one column, a sequence of expressions, or a single expression
        (``m = 1``).
    n:
        The length of the last input axis.
    params:
        Optional ``{name: initial value}``, each value a real scalar or a 1-D
        array.  They become :class:`~nn_from_scratch.Parameter` attributes of
        the node (``node.a``), in float64, with gradients
        :math:`\partial L/\partial\theta = \sum_{\text{rows}} \sum_i g_i\,\partial y_i/\partial\theta`
        derived symbolically and summed over every leading axis.
    name:
        A label for ``repr`` (defaults to the formula's ``__name__``).

    The output has the input's floating dtype.  :meth:`formula` and
    :meth:`jacobian_formula` return the symbolic outputs and Jacobian as SymPy
    matrices.  Raises ``TypeError`` when ``formula`` is not callable and
    ``ValueError`` when its output is not one row of expressions, or uses
    symbols other than the inputs and the declared parameters (naming them).
    """

    def __init__(
        self,
        formula: Callable[..., Any],
        n: int,
        *,
        params: Optional[Mapping[str, Any]] = None,
        name: Optional[str] = None,
    ) -> None:
        if not callable(formula):
            raise TypeError(
                f"SymbolicNode needs a callable formula(x, **params) returning SymPy expressions, "
                f"got {type(formula).__name__}"
            )
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"n must be a positive integer, got {n!r}")
        if n < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string or None, got {type(name).__name__}")
        sympy = _import_sympy("SymbolicNode")
        super().__init__()
        self.n = int(n)
        self.m = 0  # set once the formula has run; reserved here so that no parameter takes the name
        self.name = _default_name(formula) if name is None else name
        self._build = formula

        self._inputs: Tuple[Any, ...] = tuple(sympy.symbols(f"x_0:{self.n}", real=True))
        self._param_names: List[str] = []
        self._param_symbols: Dict[str, Any] = {}
        self._flat_params: List[Tuple[Parameter, Tuple[int, ...], Any]] = []  # (parameter, index, symbol)
        values = self._declare_parameters(sympy, params)

        outputs = self._call_formula(sympy)
        self._outputs = sympy.Matrix(outputs)  # a column, m x 1
        self.m = len(outputs)
        self._check_symbols(sympy)
        self._jacobian_matrix = self._outputs.jacobian(self._inputs)

        # only now, when the formula is known to be sound, do the parameters become attributes
        for pname, value in values.items():
            setattr(self, pname, Parameter(value, name=pname))
        for pname in self._param_names:
            parameter = getattr(self, pname)
            symbol = self._param_symbols[pname]
            if parameter.value.ndim == 0:
                self._flat_params.append((parameter, (), symbol))
            else:
                self._flat_params.extend((parameter, (j,), s) for j, s in enumerate(symbol))
        self._compile(sympy)

    # ------------------------------------------------------------ building
    def _declare_parameters(self, sympy: Any, params: Optional[Mapping[str, Any]]) -> Dict[str, np.ndarray]:
        if params is None:
            return {}
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a dict {{name: initial value}}, got {type(params).__name__}")
        values: Dict[str, np.ndarray] = {}
        taken = {str(s) for s in self._inputs}
        for pname, initial in params.items():
            if not isinstance(pname, str) or not pname.isidentifier() or keyword.iskeyword(pname):
                raise ValueError(f"parameter names must be Python identifiers, got {pname!r}")
            if pname.startswith("_") or hasattr(self, pname):
                raise ValueError(
                    f"parameter name {pname!r} is taken by the node itself (or starts with '_'); choose another"
                )
            try:
                value = np.array(initial, dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(
                    f"parameter {pname!r}: the initial value must be a real scalar or 1-D array, got {initial!r}"
                ) from None
            if value.ndim > 1 or value.size == 0:
                raise ValueError(
                    f"parameter {pname!r}: the initial value must be a real scalar or a non-empty 1-D array, "
                    f"got shape {value.shape}"
                )
            if value.ndim == 0:
                symbol: Any = sympy.Symbol(pname, real=True)
                names = [pname]
            else:
                symbol = tuple(sympy.symbols(f"{pname}_0:{value.size}", real=True))
                names = [str(s) for s in symbol]
            clash = sorted(taken.intersection(names))
            if clash:
                raise ValueError(
                    f"parameter {pname!r} would reuse the symbol names {clash}; "
                    f"inputs are x_0 ... x_{self.n - 1} and 1-D parameters are named <name>_0, <name>_1, ..."
                )
            taken.update(names)
            self._param_names.append(pname)
            self._param_symbols[pname] = symbol
            values[pname] = value
        return values

    def _call_formula(self, sympy: Any) -> List[Any]:
        kwargs = {pname: self._param_symbols[pname] for pname in self._param_names}
        try:
            signature = inspect.signature(self._build)
        except (TypeError, ValueError):  # builtins without a signature: just call it
            signature = None
        if signature is not None:
            try:
                signature.bind(self._inputs, **kwargs)
            except TypeError as error:
                wanted = f"formula(x, {', '.join(kwargs)})" if kwargs else "formula(x)"
                raise TypeError(
                    f"SymbolicNode {self.name!r}: the formula must be callable as {wanted}: {error}"
                ) from None
        result = self._build(self._inputs, **kwargs)
        return self._as_row(sympy, result)

    def _as_row(self, sympy: Any, result: Any) -> List[Any]:
        where = f"SymbolicNode {self.name!r}"
        if isinstance(result, sympy.MatrixBase):
            rows, cols = result.shape
            if rows != 1 and cols != 1:
                raise ValueError(
                    f"{where}: the formula must return one row of outputs (a Matrix with one row or one "
                    f"column, or a sequence of expressions), got a {rows} x {cols} Matrix"
                )
            entries = list(result)
        elif isinstance(result, sympy.NDimArray):
            if result.rank() != 1:
                raise ValueError(
                    f"{where}: the formula must return one row of outputs, got an Array of shape {result.shape}"
                )
            entries = list(result)
        elif isinstance(result, (list, tuple)) or (
            isinstance(result, np.ndarray) and result.ndim <= 1
        ):
            entries = list(result) if not isinstance(result, np.ndarray) else list(result.ravel())
            for i, entry in enumerate(entries):
                if isinstance(entry, (list, tuple, np.ndarray, sympy.MatrixBase)):
                    raise ValueError(
                        f"{where}: the formula must return one row of scalar expressions; "
                        f"output {i} is itself a {type(entry).__name__} (nested or ragged outputs have no "
                        "consistent size)"
                    )
        elif isinstance(result, np.ndarray):
            raise ValueError(
                f"{where}: the formula must return one row of outputs, got an array of shape {result.shape}"
            )
        else:
            entries = [result]  # a single expression: m = 1
        if not entries:
            raise ValueError(f"{where}: the formula returned no outputs")
        row = []
        for i, entry in enumerate(entries):
            try:
                expr = sympy.sympify(entry, strict=True)
            except (sympy.SympifyError, TypeError, ValueError):
                raise ValueError(
                    f"{where}: output {i} is not a SymPy expression or a number: {entry!r}"
                ) from None
            if not isinstance(expr, sympy.Expr):
                raise ValueError(
                    f"{where}: output {i} must be a scalar expression, got {type(expr).__name__}: {expr}"
                )
            row.append(expr)
        return row

    def _check_symbols(self, sympy: Any) -> None:
        declared = set(self._inputs)
        for pname in self._param_names:
            symbol = self._param_symbols[pname]
            declared.update(symbol if isinstance(symbol, tuple) else (symbol,))
        free = set().union(*(expr.free_symbols for expr in self._outputs))
        undeclared = sorted(free - declared, key=str)
        if undeclared:
            names = {str(s) for s in declared}
            hints = [
                f"{s} (a symbol of that name is declared, but {s} has other assumptions: "
                "declared symbols are real=True)"
                if str(s) in names else str(s)
                for s in undeclared
            ]
            declared_text = ", ".join(sorted(names, key=str))
            raise ValueError(
                f"SymbolicNode {self.name!r}: the formula uses undeclared symbols {', '.join(hints)}; "
                f"only the inputs and the declared parameters may appear ({declared_text}). "
                "Declare constants you want to learn in params=, or write numbers instead"
            )
        functions = sorted({type(f).__name__ for expr in self._outputs for f in expr.atoms(sympy.core.function.AppliedUndef)})
        if functions:
            raise ValueError(
                f"SymbolicNode {self.name!r}: the formula uses undefined functions {', '.join(functions)}; "
                "write them out in terms of SymPy functions"
            )

    def _compile(self, sympy: Any) -> None:
        inputs = list(self._inputs)
        theta = [symbol for _, _, symbol in self._flat_params]
        g = list(sympy.symbols(f"g_0:{self.m}", cls=sympy.Dummy, real=True))
        jac = self._jacobian_matrix
        vjp = [sum((g[i] * jac[i, j] for i in range(self.m)), sympy.Integer(0)) for j in range(self.n)]
        param_grads = [
            sum((g[i] * sympy.diff(self._outputs[i], t) for i in range(self.m)), sympy.Integer(0)) for t in theta
        ]
        modules = [{"erf": erf, "erfc": erfc}, "numpy"]

        def compile_(args: Sequence[Any], exprs: Sequence[Any]) -> Callable[..., Any]:
            return sympy.lambdify(args, list(exprs), modules=modules, cse=True, dummify=True)

        everything = list(self._outputs) + list(jac) + vjp + param_grads
        self._quiet = any(expr.has(sympy.Piecewise, sympy.Heaviside) for expr in everything)
        self._forward_fn = compile_(inputs + theta, list(self._outputs))
        self._jacobian_fn = compile_(inputs + theta, list(jac))  # row-major, m * n entries
        self._vjp_fn = compile_(inputs + theta + g, vjp)
        self._param_grad_fn = compile_(inputs + theta + g, param_grads) if theta else None

    # ------------------------------------------------------------ evaluation
    def _call(self, fn: Callable[..., Any], x: np.ndarray, g: Optional[np.ndarray] = None) -> List[Any]:
        args = [x[..., j] for j in range(self.n)]
        args += [parameter.value[index] for parameter, index, _ in self._flat_params]
        if g is not None:
            args += [g[..., i] for i in range(self.m)]
        try:
            if self._quiet:  # Piecewise evaluates every branch; the branch not taken may overflow
                with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
                    return fn(*args)
            return fn(*args)
        except NameError as error:
            raise ValueError(
                f"SymbolicNode {self.name!r}: the formula uses a function NumPy cannot evaluate ({error})"
            ) from None

    @staticmethod
    def _fill(values: Sequence[Any], shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Stack computed columns (arrays of the leading shape, or constants) along a new last axis."""
        out = np.empty(shape + (len(values),), dtype=dtype)
        for k, value in enumerate(values):
            out[..., k] = value  # broadcasts constant entries
        return out

    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim == 0 or x.shape[-1] != self.n:
            raise ValueError(f"SymbolicNode {self.name!r} expects input of shape (..., {self.n}), got {x.shape}")

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        return self._fill(self._call(self._forward_fn, x), x.shape[:-1], x.dtype)

    def _row_jacobian(self, ctx: Context) -> np.ndarray:
        x = ctx.x
        flat = self._fill(self._call(self._jacobian_fn, x), x.shape[:-1], x.dtype)
        return flat.reshape(x.shape[:-1] + (self.m, self.n))

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        x = ctx.x
        return self._fill(self._call(self._vjp_fn, x, g), x.shape[:-1], x.dtype)

    def _accumulate_grads(self, g: np.ndarray, ctx: Context) -> None:
        if self._param_grad_fn is None:
            return
        lead = ctx.x.shape[:-1]
        values = self._call(self._param_grad_fn, ctx.x, g)
        gradients: Dict[int, Tuple[Parameter, np.ndarray]] = {}  # one whole gradient per parameter
        for (parameter, index, _), value in zip(self._flat_params, values):
            total = np.broadcast_to(np.asarray(value, dtype=np.float64), lead).sum()
            _, gradient = gradients.setdefault(id(parameter), (parameter, np.zeros(parameter.shape, parameter.dtype)))
            gradient[index] = total
        for parameter, gradient in gradients.values():
            parameter.accumulate(gradient)  # one contribution per pass, as every layer adds it

    # ------------------------------------------------------------ inspection
    def formula(self) -> Any:
        """The outputs of one row as a SymPy column ``Matrix`` (m x 1) in the symbols ``x_0 ... x_{n-1}``."""
        return self._outputs.copy()

    def jacobian_formula(self) -> Any:
        r"""The symbolic row Jacobian, a SymPy ``Matrix`` (m x n) with entry ``[i, j]`` :math:`= \partial y_i/\partial x_j`."""
        return self._jacobian_matrix.copy()

    @property
    def symbols(self) -> Tuple[Any, ...]:
        """The input symbols ``(x_0, ..., x_{n-1})``."""
        return self._inputs

    @property
    def parameter_symbols(self) -> Dict[str, Any]:
        """``{name: symbol}`` for scalar parameters, ``{name: (symbols...)}`` for 1-D ones."""
        return dict(self._param_symbols)

    def extra_repr(self) -> str:
        text = f"{self.name!r}, n={self.n}, m={self.m}"
        if self._param_names:
            text += f", params={self._param_names}"
        return text
