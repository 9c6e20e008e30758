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


# ------------------------------------------------- several inputs, several outputs
from nn_from_scratch import Parameter  # noqa: E402
from nn_from_scratch.gradcheck import compare  # noqa: E402
from nn_from_scratch.nodes import Add, Concat, Multiply, Split  # noqa: E402


class WrongSecondInput(Multiply):
    """d/db taken as g * b instead of g * a: input 0 right, input 1 wrong (the Jacobian is still right)."""

    def _vjp(self, g, ctx):
        a, b = ctx.operands
        return g * b, g * b


class WrongSecondInputByVJP(Node):
    """Only a VJP, wrong for input 1: the Jacobian (built from it) disagrees with finite differences."""

    num_inputs = 2

    def _forward(self, a, b, ctx):
        return a * b

    def _vjp(self, g, ctx):
        a, b = ctx.inputs
        return g * b, g * b


class SwappedParts(Split):
    """The parts' gradients put back in the wrong order."""

    def _vjp(self, g, ctx):
        return np.concatenate(g[::-1], axis=ctx.axis)


class NoGradientForInput1(Node):
    num_inputs = 2

    def _forward(self, a, b, ctx):
        return a + b

    def _vjp(self, g, ctx):
        return g, None

    def _jacobian(self, ctx):
        eye = np.eye(ctx.y.size).reshape(ctx.y.shape * 2)
        return eye, eye


class Masked(Node):
    """y = w ⊙ a ⊙ mask + b, with the mask a constant input and w a parameter."""

    num_inputs = 3
    constant_inputs = (2,)

    def __init__(self, n):
        super().__init__()
        self.w = Parameter(np.linspace(0.5, 1.5, n))

    def _forward(self, a, b, mask, ctx):
        return self.w.value * a * mask + b

    def _vjp(self, g, ctx):
        a, b, mask = ctx.inputs
        return g * self.w.value * mask, g, None

    def _accumulate_grads(self, g, ctx):
        a, b, mask = ctx.inputs
        self.w.accumulate(np.sum(g * a * mask, axis=0))


def failed(report):
    return [c.name for c in report.comparisons if not c.ok]


def test_a_wrong_gradient_of_one_input_fails_and_is_named(rng):
    x = (rng.standard_normal((3, 2)), rng.standard_normal((3, 2)))
    assert check_node(Multiply(), x).ok
    assert failed(check_node(WrongSecondInput(), x)) == ["backward vs Jᵀg (input 1)"]
    assert failed(check_node(WrongSecondInputByVJP(), x)) == ["jacobian (input 1) vs finite diff."]
    with pytest.raises(AssertionError, match=r"input 1"):
        assert_gradients(WrongSecondInput(), x)


def test_a_wrong_gradient_of_a_broadcast_input_fails(rng):
    class NotSummed(Add):
        def _vjp(self, g, ctx):
            return g, g[:1]  # the broadcast input's gradient taken from one row instead of summed

    x = (rng.standard_normal((3, 2)), rng.standard_normal((1, 2)))
    assert check_node(Add(), x).ok
    assert "backward vs Jᵀg (input 1)" in failed(check_node(NotSummed(), x))


def test_a_wrong_multi_output_node_fails(rng):
    x = rng.standard_normal((4, 3))
    assert check_node(Split([1, 3]), x).ok
    assert failed(check_node(SwappedParts([1, 3]), x)) == ["backward vs Jᵀg"]


def test_every_input_output_pair_and_parameter_is_checked(rng):
    report = check_node(Concat(axis=0, num_inputs=3), tuple(rng.standard_normal((k, 2)) for k in (1, 2, 3)))
    assert report.ok
    names = [c.name for c in report.comparisons]
    for i in range(3):
        assert f"backward vs Jᵀg (input {i})" in names and f"jacobian (input {i}) vs finite diff." in names
    names = [c.name for c in check_node(Split([2, 1, 1]), rng.standard_normal(4)).comparisons]
    assert [n for n in names if n.startswith("jacobian")] == [f"jacobian of output {o} vs finite diff." for o in range(3)]


def test_a_constant_input_is_skipped_and_a_parameter_is_checked(rng):
    node = Masked(3)
    x = (rng.standard_normal((2, 3)), rng.standard_normal((2, 3)), np.array([[1, 0, 1], [0, 1, 1]]))
    report = assert_gradients(node, x)
    names = [c.name for c in report.comparisons]
    assert "d/d w vs finite diff." in names
    assert not any("(input 2)" in n for n in names)
    assert any("(input 1)" in n for n in names)


def test_a_missing_gradient_for_an_input_that_needs_one_fails(rng):
    report = check_node(NoGradientForInput1(), (rng.standard_normal(3), rng.standard_normal(3)))
    assert failed(report) == ["backward vs Jᵀg (input 1)"]


def test_an_output_given_no_gradient_is_taken_as_zero(rng):
    x = rng.standard_normal(4)
    assert check_node(Split([1, 3]), x, (None, rng.standard_normal(3))).ok
    assert check_node(Split([1, 3]), x, [rng.standard_normal(1), None]).ok


def test_inputs_given_in_the_wrong_number_are_refused(rng):
    with pytest.raises(ValueError, match="takes 2 inputs"):
        check_node(Add(), rng.standard_normal(3))
    with pytest.raises(ValueError, match="takes 2 inputs"):
        check_node(Add(), (rng.standard_normal(3),))


def test_compare_takes_several_inputs_and_outputs(rng):
    x = (rng.standard_normal((3, 2)), rng.standard_normal((3, 2)))
    assert compare(Multiply(), Multiply(), x).ok
    report = compare(WrongSecondInput(), Multiply(), x)
    assert [c.name for c in report.comparisons if not c.ok] == ["backward (input 1)"]
    assert compare(Split([1, 2]), Split([1, 2]), rng.standard_normal(3)).ok
    assert not compare(SwappedParts([1, 2]), Split([1, 2]), rng.standard_normal(3)).ok


def test_numerical_jacobian_of_a_fortran_ordered_or_transposed_input():
    """The perturbations went into a copy for an input that is not C-ordered: the Jacobian came out all zeros."""
    x = np.asfortranarray(np.arange(6.0).reshape(2, 3)) / 7
    expected = numerical_jacobian(np.sin, np.ascontiguousarray(x))
    np.testing.assert_allclose(numerical_jacobian(np.sin, x), expected, rtol=0, atol=0)
    np.testing.assert_allclose(numerical_jacobian(np.sin, x), np.diag(np.cos(x).ravel()).reshape(2, 3, 2, 3),
                               rtol=1e-8, atol=1e-10)
