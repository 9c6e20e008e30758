"""SymbolicNode: nodes from SymPy formulas, checked against the hand-written nodes with gradcheck.compare."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

sympy = pytest.importorskip("sympy")

from nn_from_scratch import (  # noqa: E402
    ELU,
    GELU,
    Linear,
    LogSoftMax,
    NormalizedSoftMax,
    Sequential,
    Sigmoid,
    SoftMax,
    Softplus,
    Tanh,
)
from nn_from_scratch.gradcheck import GradcheckReport, assert_gradients, check_node, compare  # noqa: E402
from nn_from_scratch.losses import MSELoss  # noqa: E402
from nn_from_scratch.optim import SGD  # noqa: E402
from nn_from_scratch.symbolic import SymbolicNode  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "write-your-own-node.md"


# ------------------------------------------------------------------ formulas
def softmax_formula(x):
    e = [sympy.exp(v) for v in x]
    return sympy.Matrix(e) / sum(e)


def log_softmax_formula(x):
    log_total = sympy.log(sum(sympy.exp(v) for v in x))
    return [v - log_total for v in x]


def normalized_softmax_formula(k):
    """softmax(x / |x_k|) with k the index of the largest |x_j|, known in advance.

    This twin uses ``Abs`` of the known max index (not ``sympy.Max``): the
    scale's derivative then flows only through x_k, exactly the hand-written
    node's convention, and the test points below have a unique largest |x_j|
    in every row at index k.
    """

    def formula(x):
        scale = sympy.Abs(x[k])
        return softmax_formula([v / scale for v in x])

    return formula


def elementwise(f):
    return lambda x: [f(v) for v in x]


ALPHA = 1.3
TWINS = {
    "SoftMax": (SoftMax, softmax_formula),
    "LogSoftMax": (LogSoftMax, log_softmax_formula),
    "Sigmoid": (Sigmoid, elementwise(lambda v: 1 / (1 + sympy.exp(-v)))),
    "Tanh": (Tanh, elementwise(sympy.tanh)),
    "Softplus": (Softplus, elementwise(lambda v: sympy.log(1 + sympy.exp(v)))),
    "ELU": (lambda: ELU(ALPHA),
            elementwise(lambda v: sympy.Piecewise((v, v > 0), (ALPHA * (sympy.exp(v) - 1), True)))),
    "GELU": (GELU, elementwise(lambda v: v / 2 * (1 + sympy.erf(v / sympy.sqrt(2))))),
}


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(7)
    return rng.normal(scale=1.5, size=(4, 5))


@pytest.mark.parametrize("name", sorted(TWINS))
def test_symbolic_twin_matches_the_hand_written_node(name, points):
    make, formula = TWINS[name]
    twin = SymbolicNode(formula, 5, name=name.lower())
    for x in (points, points[0], points.reshape(2, 2, 5)):
        report = compare(make(), twin, x)
        assert isinstance(report, GradcheckReport)
        assert report.ok, report
        assert [c.name for c in report.comparisons] == ["forward", "backward", "jacobian"]
    assert_gradients(twin, points)


def test_normalized_softmax_twin_with_the_known_max_index():
    # rows with a unique largest |x_j|: at index 2 (positive) and at index 2 (negative)
    x = np.array([[0.0, 1.0, 4.0, 2.0, 3.0], [0.5, -1.0, -3.5, 2.0, 1.5]])
    k = int(np.argmax(np.abs(x[0])))
    assert k == 2 and np.all(np.argmax(np.abs(x), axis=-1) == k)
    twin = SymbolicNode(normalized_softmax_formula(k), 5, name="normalized_softmax")
    report = compare(NormalizedSoftMax(), twin, x, np.array([[1, 2, 3, 2, 1], [0.5, -1, 2, 0, 1]]))
    assert report.ok, report
    # the README's corrected gradient J^T g at the course notebook's point
    twin.forward(x[0])
    dx = twin.backward(np.array([1.0, 2, 3, 2, 1]))
    np.testing.assert_allclose(dx, [-0.02721609, 0.00166485, 0.04172728, 0.00213771, -0.05761647], atol=1e-8)


def test_formula_and_jacobian_formula_are_sympy_matrices():
    node = SymbolicNode(softmax_formula, 3)
    y, jac = node.formula(), node.jacobian_formula()
    assert isinstance(y, sympy.MatrixBase) and y.shape == (3, 1)
    assert isinstance(jac, sympy.MatrixBase) and jac.shape == (3, 3)
    expected = sympy.diag(*y) - y * y.T  # diag(y) - y y^T
    assert sympy.simplify(jac - expected) == sympy.zeros(3, 3)
    assert node.symbols == tuple(sympy.symbols("x_0:3", real=True))
    assert "\\frac" in sympy.latex(jac)
    y[0] = 0  # a copy: the node's formula is unchanged
    assert node.formula()[0] != 0


def test_a_node_with_parameters_passes_check_node(rng):
    node = SymbolicNode(lambda x, a, b: [a * v**2 + b[i] for i, v in enumerate(x)], 3,
                        params={"a": 0.7, "b": [0.1, -0.2, 0.3]}, name="quadratic")
    assert [name for name, _ in node.named_parameters()] == ["a", "b"]
    assert node.a.shape == () and node.b.shape == (3,)
    for x in (rng.standard_normal(3), rng.standard_normal((4, 3)), rng.standard_normal((2, 3, 3))):
        report = check_node(node, x)
        assert report.ok, report
        assert [c.name for c in report.comparisons][-2:] == ["d/d a vs finite diff.", "d/d b vs finite diff."]
    # the parameter gradient is summed over every leading axis: dL/da = sum g * x^2, dL/db_i = sum g_i
    x, g = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4, 3))
    node.zero_grad()
    node.forward(x)
    node.backward(g)
    np.testing.assert_allclose(node.a.grad, np.sum(g * x**2))
    np.testing.assert_allclose(node.b.grad, g.sum(axis=(0, 1)))
    state = node.state_dict()
    assert set(state) == {"a", "b"}
    assert "params=['a', 'b']" in repr(node)


def test_parameters_mixing_rows_and_constant_outputs(rng):
    # m != n, a constant output (broadcast to the leading shape) and a parameter vector inside a dot product
    def formula(x, w, c):
        return [sum(wi * xi for wi, xi in zip(w, x)) + c, sympy.sin(x[0]) * x[1], sympy.Integer(2)]

    node = SymbolicNode(formula, 2, params={"w": [0.5, -1.0], "c": 0.25})
    x = rng.standard_normal((5, 2))
    y = node.forward(x)
    assert y.shape == (5, 3)
    np.testing.assert_allclose(y[:, 2], 2.0)
    np.testing.assert_allclose(y[:, 0], x @ [0.5, -1.0] + 0.25)
    assert node.jacobian(x).shape == (5, 3, 5, 2)
    assert check_node(node, x).ok


def test_a_symbolic_node_trains_in_a_sequential():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3))
    target = 1.5 * (x @ np.array([[1.0], [-2.0], [0.5]])) ** 2 - 0.3
    square = SymbolicNode(lambda h, a, b: [a * h[0] ** 2 + b], 1, params={"a": 0.2, "b": 0.0}, name="scaled_square")
    model = Sequential(Linear(3, 1, rng=0), square)
    loss = MSELoss()
    optimizer = SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        value = loss.forward(model.forward(x), target)
        optimizer.zero_grad()
        model.backward(loss.backward())
        optimizer.step()
        losses.append(value)
    assert losses[-1] < 0.5 * losses[0]
    assert np.all(np.isfinite(losses))
    assert abs(float(square.a.grad)) > 0 and square.a.value != 0.2
    assert check_node(model, x[:4]).ok


def test_dtype_and_shapes_follow_the_node_contract(points):
    node = SymbolicNode(softmax_formula, 5)
    y32 = node.forward(points.astype(np.float32))
    assert y32.dtype == np.float32
    assert node.backward(np.ones_like(y32)).dtype == np.float32
    assert node.forward(np.zeros((0, 5))).shape == (0, 5)
    assert node.jacobian(points[0]).shape == (5, 5)
    assert node.forward([1, 2, 3, 4, 5]).dtype == np.float64  # integers become float64


def test_a_single_expression_is_one_output():
    node = SymbolicNode(lambda x: x[0] * x[1], 2, name="product")
    assert node.m == 1
    np.testing.assert_allclose(node.forward(np.array([[2.0, 3.0], [1.0, -1.0]])), [[6.0], [-1.0]])
    row_matrix = SymbolicNode(lambda x: sympy.Matrix([[x[0], x[1], x[0] * x[1]]]), 2)
    assert row_matrix.m == 3


def test_piecewise_evaluates_without_warnings_for_large_inputs():
    node = SymbolicNode(TWINS["ELU"][1], 2)
    with np.errstate(all="raise"):
        y = node.forward(np.array([[800.0, -800.0]]))
    np.testing.assert_allclose(y, [[800.0, -ALPHA]])


def test_max_in_a_formula_compiles_to_numpy():
    node = SymbolicNode(lambda x: [sympy.Max(x[0], 0), sympy.Min(x[0], x[1])], 2)
    x = np.array([[-1.0, 2.0], [3.0, 1.0]])
    np.testing.assert_allclose(node.forward(x), [[0.0, -1.0], [3.0, 1.0]])
    assert check_node(node, x).ok


# --------------------------------------------------------------------- compare
def test_compare_catches_different_nodes_and_restores_state(points):
    a, b = SoftMax(), SymbolicNode(log_softmax_formula, 5)
    b.forward(points[:1])
    saved = b.pending
    report = compare(a, b, points)
    assert not report.ok
    assert "FAILED" in repr(report)
    assert a.pending is None and b.pending is saved
    with pytest.raises(ValueError, match="shapes differ"):
        compare(SoftMax(), SymbolicNode(lambda x: [x[0]], 5), points)


def test_compare_restores_parameter_gradients(rng):
    make = lambda: SymbolicNode(lambda x, a: [a * x[0]], 1, params={"a": 2.0})  # noqa: E731
    a, b = make(), make()
    a.a.grad[...] = 5.0
    assert compare(a, b, rng.standard_normal((3, 1))).ok
    assert float(a.a.grad) == 5.0 and float(b.a.grad) == 0.0


# ---------------------------------------------------------------------- errors
def test_formula_must_be_callable():
    with pytest.raises(TypeError, match="callable"):
        SymbolicNode(sympy.Matrix([1, 2]), 2)


def test_n_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="positive"):
        SymbolicNode(softmax_formula, 0)
    with pytest.raises(TypeError, match="positive integer"):
        SymbolicNode(softmax_formula, 2.0)


def test_output_must_be_a_row():
    with pytest.raises(ValueError, match="one row.*2 x 2 Matrix"):
        SymbolicNode(lambda x: sympy.Matrix([[x[0], x[1]], [x[1], x[0]]]), 2)
    with pytest.raises(ValueError, match="consistent size"):
        SymbolicNode(lambda x: [[x[0], x[1]], [x[0]]], 2)
    with pytest.raises(ValueError, match="no outputs"):
        SymbolicNode(lambda x: [], 2)
    with pytest.raises(ValueError, match="scalar expression"):
        SymbolicNode(lambda x: [x[0] > 0], 2)
    with pytest.raises(ValueError, match="not a SymPy expression"):
        SymbolicNode(lambda x: [x[0], "x_1"], 2)


def test_undeclared_symbols_are_named():
    c = sympy.Symbol("c", real=True)
    with pytest.raises(ValueError, match=r"undeclared symbols c\b.*params="):
        SymbolicNode(lambda x: [c * x[0]], 1)
    with pytest.raises(ValueError, match="other assumptions"):  # x_0 without real=True is another symbol
        SymbolicNode(lambda x: [sympy.Symbol("x_0") + x[0]], 1)
    with pytest.raises(ValueError, match="undefined functions f"):
        SymbolicNode(lambda x: [sympy.Function("f")(x[0])], 1)


def test_parameter_declarations_are_checked():
    with pytest.raises(TypeError, match=r"formula\(x, a\)"):
        SymbolicNode(lambda x: [x[0]], 1, params={"a": 1.0})
    with pytest.raises(ValueError, match="scalar or a non-empty 1-D"):
        SymbolicNode(lambda x, a: [x[0]], 1, params={"a": np.ones((2, 2))})
    with pytest.raises(ValueError, match="taken by the node"):
        SymbolicNode(lambda x, n: [x[0]], 1, params={"n": 1.0})
    with pytest.raises(ValueError, match="reuse the symbol names"):
        SymbolicNode(lambda x, x_0: [x[0]], 1, params={"x_0": 1.0})
    with pytest.raises(ValueError, match="identifiers"):
        SymbolicNode(lambda x, **p: [x[0]], 1, params={"not valid": 1.0})
    with pytest.raises(TypeError, match="dict"):
        SymbolicNode(lambda x: [x[0]], 1, params=[("a", 1.0)])


def test_input_must_have_n_columns():
    node = SymbolicNode(softmax_formula, 3)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\), got \(2, 4\)"):
        node.forward(np.zeros((2, 4)))


def test_functions_numpy_cannot_evaluate_are_reported():
    node = SymbolicNode(lambda x: [sympy.besselj(0, x[0])], 1)
    with pytest.raises(ValueError, match="NumPy cannot evaluate"):
        node.forward(np.ones((2, 1)))


def test_missing_sympy_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "sympy", None)
    with pytest.raises(ImportError, match=r'pip install sympy \(or pip install "\.\[symbolic\]" from a checkout'):
        SymbolicNode(softmax_formula, 3)


# ------------------------------------------------------------ the tutorial runs
DOC_BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S) if DOC.exists() else []


def test_the_tutorial_has_examples():
    assert len(DOC_BLOCKS) >= 4


def test_the_tutorial_code_blocks_run_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__tutorial__"}
    for index, block in enumerate(DOC_BLOCKS, 1):
        exec(compile(block, f"docs/write-your-own-node.md block {index}", "exec"), namespace)
    # the container of section 5, written only against the public contract, passes gradcheck
    # on a fresh inner model too, and its Jacobian is the product of its children's
    Repeat = namespace["Repeat"]
    inner = Sequential(Linear(2, 2, rng=5), Tanh())
    x = np.random.default_rng(3).standard_normal((3, 2))
    assert_gradients(Repeat(inner, 2), x)
    twice = Sequential(inner, inner)  # the same child twice: the same function and weight gradient
    np.testing.assert_allclose(Repeat(inner, 2).jacobian(x), twice.jacobian(x), rtol=1e-12, atol=1e-14)
