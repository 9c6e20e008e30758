"""The gradient-checking toolkit: it must pass correct nodes and catch wrong ones."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from nn_from_scratch import Node, NormalizedSoftMax, SoftMax
from nn_from_scratch.gradcheck import (
    GradcheckReport,
    assert_gradients,
    check_node,
    numerical_jacobian,
    sympy_jacobian,
)


class WrongSoftMax(SoftMax):
    """The course notebook's mistake: backward returns J g instead of Jᵀ g."""

    def _vjp(self, g, ctx):
        return np.einsum("...ij,...j->...i", self._row_jacobian(ctx), g)


class WrongNormalizedSoftMax(NormalizedSoftMax):
    def _vjp(self, g, ctx):
        return np.einsum("...ij,...j->...i", self._row_jacobian(ctx), g)


class WrongJacobian(Node):
    def _forward(self, x, ctx):
        return np.sin(x)

    def _jacobian(self, ctx):
        return np.diag(np.sin(ctx.x))  # should be cos


def test_numerical_jacobian_of_a_known_function():
    x = np.array([0.3, -1.2, 2.0])
    jac = numerical_jacobian(lambda v: np.array([v[0] * v[1], np.exp(v[2])]), x)
    expected = np.array([[x[1], x[0], 0.0], [0.0, 0.0, np.exp(x[2])]])
    np.testing.assert_allclose(jac, expected, rtol=1e-8, atol=1e-9)
    assert jac.dtype == np.float64


def test_numerical_jacobian_works_in_float64_even_for_float32_input():
    x = np.array([1.0, 2.0], dtype=np.float32)
    jac = numerical_jacobian(lambda v: v**2, x)
    np.testing.assert_allclose(jac, np.diag([2.0, 4.0]), rtol=1e-8, atol=1e-8)


def test_check_node_passes_correct_nodes(rng):
    report = check_node(SoftMax(), rng.standard_normal((3, 4)))
    assert isinstance(report, GradcheckReport)
    assert report.ok
    assert [c.name for c in report.comparisons] == ["backward vs Jᵀg", "jacobian vs finite diff."]
    for c in report.comparisons:
        assert abs(c.max_abs) < 1e-8


def test_check_node_catches_a_transposed_gradient(rng):
    x = rng.standard_normal(5) * 2
    report = check_node(WrongNormalizedSoftMax(), x)
    assert not report.ok
    assert not report.comparisons[0].ok
    assert report.comparisons[1].ok  # the Jacobian itself is right
    with pytest.raises(AssertionError, match="backward vs"):
        assert_gradients(WrongNormalizedSoftMax(), x)
    # softmax's Jacobian is symmetric, so the same mistake goes unnoticed there: the check says ok
    assert check_node(WrongSoftMax(), x).ok


def test_check_node_catches_a_wrong_jacobian(rng):
    report = check_node(WrongJacobian(), rng.standard_normal(4))
    assert not report.comparisons[1].ok
    text = repr(report)
    assert "FAILED" in text and "jacobian vs finite diff." in text and "max abs err" in text


def test_check_node_leaves_the_node_as_it_was(rng):
    node = SoftMax()
    x = rng.standard_normal(4)
    node.forward(x)
    check_node(node, rng.standard_normal(4))
    g = rng.standard_normal(4)
    np.testing.assert_allclose(node.backward(g), g @ SoftMax().jacobian(x), rtol=1e-12, atol=1e-15)


def test_sympy_jacobian_matches_softmax_in_the_right_orientation():
    import sympy as sp

    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    g = np.array([1.0, 2.0, 3.0, 2.0, 1.0])

    def build(symbols):
        exps = sp.Matrix([sp.exp(s) for s in symbols])
        return exps / sum(exps)

    jac = sympy_jacobian(build, x)
    np.testing.assert_allclose(jac, SoftMax().jacobian(x), rtol=1e-12, atol=1e-14)
    node = SoftMax(5)
    node.forward(x)
    np.testing.assert_allclose(node.backward(g), g @ jac, rtol=1e-12, atol=1e-14)


def normalized_build(k):
    """The seed's formula, x / |x_k| with k the index of the largest magnitude at the test point."""
    import sympy as sp

    def build(symbols):
        exps = sp.Matrix([sp.exp(s / sp.Abs(symbols[k])) for s in symbols])
        return exps / sum(exps)

    return build


@pytest.mark.parametrize("x", [[0.0, 1.0, 4.0, 2.0, 3.0], [0.5, -3.0, 1.0, 2.0], [0.1, 0.2, -0.3]])
def test_sympy_jacobian_matches_normalized_softmax(x):
    x = np.array(x)
    jac = sympy_jacobian(normalized_build(int(np.argmax(np.abs(x)))), x)
    np.testing.assert_allclose(jac, NormalizedSoftMax().jacobian(x), rtol=1e-12, atol=1e-14)
    g = np.linspace(-1.0, 2.0, x.size)
    node = NormalizedSoftMax()
    node.forward(x)
    np.testing.assert_allclose(node.backward(g), g @ jac, rtol=1e-12, atol=1e-14)


def test_sympy_jacobian_stacks_rows():
    import sympy as sp

    x = np.array([[1.0, -2.0, 0.5], [0.1, 0.2, -0.3]])
    jac = sympy_jacobian(lambda s: sp.Matrix([s[0] * s[1], s[2] ** 2]), x)
    expected = np.array([[[r[1], r[0], 0.0], [0.0, 0.0, 2 * r[2]]] for r in x])
    np.testing.assert_allclose(jac, expected, rtol=1e-14, atol=1e-15)


def test_sympy_jacobian_without_sympy_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sympy", None)
    with pytest.raises(ImportError, match=r'sympy_jacobian needs sympy.*pip install sympy \(or pip install "\.\[symbolic\]"'):
        sympy_jacobian(lambda s: s, np.ones(2))
