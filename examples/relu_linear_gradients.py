# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # ReLU and Linear: forward, Jacobian, backward
#
# Every layer of `nn_from_scratch` is a node with three faces:
#
# * `forward(x)` computes `y = f(x)` and keeps what the derivative needs;
# * `jacobian()` returns the dense Jacobian `J[i, j] = ∂y_i/∂x_j`, of shape
#   `y.shape + x.shape`;
# * `backward(g)` returns the gradient `dL/dx = Jᵀ g` for an upstream
#   gradient `g = dL/dy`, without ever building `J`.
#
# This notebook takes the two layers of every multilayer perceptron, ReLU and
# Linear, and checks the three faces against each other, against central
# finite differences (`nn_from_scratch.gradcheck`) and, when SymPy is
# installed, against a symbolic derivation.
#
# Run it with `python examples/relu_linear_gradients.py`; it asserts its own
# numbers and prints `relu_linear_gradients: all checks pass` at the end.

# %%
import numpy as np

from nn_from_scratch import Linear, ReLU, Sequential
from nn_from_scratch.gradcheck import check_node, numerical_jacobian

try:
    import sympy as sp
except ImportError:  # the symbolic cells are skipped without SymPy
    sp = None

TOL = dict(rtol=1e-12, atol=1e-12)  # for quantities that must agree to rounding

# %% [markdown]
# ## 1. ReLU
#
# `y = max(x, 0)` acts on each element separately, so its Jacobian is
# diagonal: `diag(f'(x))` with `f'(x) = 1` for `x > 0` and `0` for `x < 0`.

# %%
relu = ReLU()
x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
y = relu.forward(x)
print("x              ", x)
print("ReLU(x)        ", y)
np.testing.assert_allclose(y, [0.0, 0.0, 0.0, 0.5, 2.0], **TOL)

J = relu.jacobian()
print("Jacobian\n", J)
np.testing.assert_allclose(J, np.diag([0.0, 0.0, 0.0, 1.0, 1.0]), **TOL)

# %% [markdown]
# The backward pass is the vector–Jacobian product `Jᵀ g`. For a diagonal
# Jacobian that is just `g` masked by `x > 0`, and the node computes it that
# way, never forming `J`. `reset_after=False` keeps the cached forward pass so
# that we can call `backward` again below.

# %%
g = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
dx = relu.backward(g, reset_after=False)
print("backward(g)    ", dx)
np.testing.assert_allclose(dx, J.T @ g, **TOL)
np.testing.assert_allclose(dx, [0.0, 0.0, 0.0, 4.0, 5.0], **TOL)

# %% [markdown]
# ### The derivative at 0
#
# `max(x, 0)` has a kink at `x = 0`: the slope is 0 on the left and 1 on the
# right, so there is no derivative there, only subgradients (any number in
# `[0, 1]`). A library has to pick one. `nn_from_scratch` takes
# **ReLU'(0) = 0**, as torch does (see `nodes/activations.py`): an input that is
# exactly zero passes no gradient back. That is why `dx[2]` above is `0`
# although `g[2] = 3`.
#
# A central finite difference straddles the kink and sees the *average* of
# the two slopes, `(max(ε, 0) − max(−ε, 0)) / 2ε = 1/2`. So `check_node`,
# which compares `jacobian()` with finite differences, reports a mismatch of
# exactly 0.5 at `x = 0`, and agrees everywhere else. This is a convention,
# not a bug, and the right way to gradient-check a ReLU is at points away from
# its kink.

# %%
numeric = numerical_jacobian(relu.evaluate, x)
print("finite-difference slopes", np.diag(numeric))
np.testing.assert_allclose(np.diag(numeric), [0.0, 0.0, 0.5, 1.0, 1.0], rtol=1e-9, atol=1e-9)

at_kink = check_node(ReLU(), x, g)
print(at_kink)
assert not at_kink.ok  # only the Jacobian-vs-finite-difference row fails...
assert at_kink.comparisons[0].ok  # ...backward still equals Jᵀg exactly
np.testing.assert_allclose(at_kink.comparisons[1].max_abs, 0.5, rtol=1e-6, atol=1e-9)

rng = np.random.default_rng(0)
x_away = rng.standard_normal((4, 6))  # no exact zeros, and no entry within ε of 0
assert np.abs(x_away).min() > 1e-3
away = check_node(ReLU(), x_away, rng=rng)
print(away)
assert away.ok

# %% [markdown]
# SymPy makes the same point in its own way: it differentiates `Max(x, 0)`
# to the Heaviside step `θ(x)` and, by default, sets `θ(0) = 1/2`, the
# finite-difference value. `Heaviside(x, 0)` is the library's (and torch's)
# choice.

# %%
if sp is not None:
    s = sp.Symbol("s", real=True)
    derivative = sp.diff(sp.Max(s, 0), s)
    print("d/ds Max(s, 0) =", derivative, "; at 0:", derivative.subs(s, 0))
    assert derivative.subs(s, 0) == sp.Rational(1, 2)
    assert sp.Heaviside(0, 0) == 0
    library_rule = sp.lambdify(s, sp.Heaviside(s, 0), modules="numpy")
    np.testing.assert_allclose(library_rule(x), np.diag(J), **TOL)
else:
    print("SymPy is not installed: skipping the symbolic ReLU check")

# %% [markdown]
# ## 2. Linear
#
# `Linear(in, out)` computes `y = x Wᵀ + b` for every row of `x`, with the
# weight stored as `(out, in)` like `torch.nn.Linear`. For one row,
# `∂y_o/∂x_i = W_{o,i}`: the Jacobian of a row *is* `W`. For a batch of `N`
# rows the full Jacobian has shape `(N, out, N, in)` and is block diagonal,
# because row `n` of `y` depends only on row `n` of `x`.

# %%
layer = Linear(3, 2, rng=np.random.default_rng(1))
W, b = layer.weight.value, layer.bias.value
X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0], [0.0, 0.0, 1.0], [2.0, -1.0, 0.5]])
Y = layer.forward(X)
by_hand = np.array([[sum(W[o, i] * row[i] for i in range(3)) + b[o] for o in range(2)] for row in X])
print("W =\n", W, "\nb =", b)
print("Y =\n", Y)
np.testing.assert_allclose(Y, by_hand, **TOL)

J = layer.jacobian()
print("Jacobian shape", J.shape)
assert J.shape == (4, 2, 4, 3)
for n in range(4):
    for m in range(4):
        np.testing.assert_allclose(J[n, :, m, :], W if n == m else np.zeros_like(W), **TOL)

# %% [markdown]
# ### Backward: the input gradient and the parameter gradients
#
# With the upstream gradient `G = dL/dY` of shape `(N, out)`:
#
# * `dL/dX = G W`, the same as contracting `G` with the Jacobian (`Jᵀ g`);
# * `dL/dW = Gᵀ X`, shape `(out, in)`: entry `(o, i)` sums `G[n, o] · X[n, i]`
#   over the rows, because `W_{o,i}` touches every row;
# * `dL/db = Σ_n G[n, :]`, the column sums of `G`.
#
# `backward` returns `dL/dX` and *adds* the parameter gradients into
# `weight.grad` and `bias.grad`; they accumulate over calls until
# `zero_grad()`, as in torch.

# %%
G = np.random.default_rng(2).standard_normal(Y.shape)
layer.zero_grad()
dX = layer.backward(G, reset_after=False)
np.testing.assert_allclose(dX, G @ W, **TOL)
np.testing.assert_allclose(dX, np.tensordot(G, J, axes=2), **TOL)
np.testing.assert_allclose(layer.weight.grad, G.T @ X, **TOL)
np.testing.assert_allclose(layer.bias.grad, G.sum(axis=0), **TOL)
print("dL/dX =\n", dX)
print("dL/dW =\n", layer.weight.grad)
print("dL/db =", layer.bias.grad)

layer.backward(G)  # a second backward adds the same gradients again
np.testing.assert_allclose(layer.weight.grad, 2 * G.T @ X, **TOL)
layer.zero_grad()
assert not layer.weight.grad.any() and not layer.bias.grad.any()

# %% [markdown]
# `check_node` puts all of this against central finite differences: the
# input gradient (`backward` against `Jᵀg`, and `jacobian()` against
# `numerical_jacobian`) and every parameter gradient, perturbing each entry
# of `W` and `b`. The errors are at the level of floating-point rounding,
# because a linear map has no curvature for the finite differences to miss.

# %%
report = check_node(layer, X, G)
print(report)
assert report.ok
for comparison in report.comparisons:
    assert comparison.max_abs < 1e-8, comparison

numeric_J = numerical_jacobian(layer.evaluate, X)
np.testing.assert_allclose(layer.jacobian(X), numeric_J, rtol=1e-7, atol=1e-9)

# %% [markdown]
# ### The same derivatives from SymPy
#
# We write one row symbolically, `y = W x + b`, and the scalar
# `L = Σ_o g_o y_o` whose gradient the backward pass computes. SymPy
# differentiates it with respect to `x`, `W` and `b`; summing the per-row
# results over the batch gives the layer's gradients.

# %%
if sp is not None:
    Ws = sp.Matrix(2, 3, lambda o, i: sp.Symbol(f"W_{o}{i}", real=True))
    bs = sp.Matrix(2, 1, lambda o, _: sp.Symbol(f"b_{o}", real=True))
    xs = sp.Matrix(3, 1, lambda i, _: sp.Symbol(f"x_{i}", real=True))
    gs = sp.Matrix(2, 1, lambda o, _: sp.Symbol(f"g_{o}", real=True))
    ys = Ws * xs + bs
    Ls = (gs.T * ys)[0, 0]
    print("y =", list(ys))
    assert ys.jacobian(xs) == Ws  # the Jacobian of a row is W itself
    dL_dW = sp.Matrix(2, 3, lambda o, i: sp.diff(Ls, Ws[o, i]))
    dL_db = sp.Matrix(2, 1, lambda o, _: sp.diff(Ls, bs[o]))
    dL_dx = sp.Matrix(3, 1, lambda i, _: sp.diff(Ls, xs[i]))
    print("dL/dW =", dL_dW, "  (the outer product g xᵀ)")
    assert dL_dW == gs * xs.T and dL_db == gs and dL_dx == Ws.T * gs

    symbols = list(Ws) + list(bs) + list(xs) + list(gs)
    grads = sp.lambdify(symbols, [dL_dx, dL_dW, dL_db], modules="numpy")
    rows = [grads(*W.ravel(), *b, *X[n], *G[n]) for n in range(len(X))]
    sym_dX = np.stack([np.asarray(r[0], dtype=float).ravel() for r in rows])
    sym_dW = sum(np.asarray(r[1], dtype=float) for r in rows)
    sym_db = sum(np.asarray(r[2], dtype=float).ravel() for r in rows)
    layer.zero_grad()
    layer.forward(X)
    np.testing.assert_allclose(layer.backward(G), sym_dX, **TOL)
    np.testing.assert_allclose(layer.weight.grad, sym_dW, **TOL)
    np.testing.assert_allclose(layer.bias.grad, sym_db, **TOL)
    layer.zero_grad()
else:
    print("SymPy is not installed: skipping the symbolic Linear check")

# %% [markdown]
# ## 3. Backpropagation is the chain rule, one VJP at a time
#
# Stack the two: `Linear → ReLU → Linear`. The Jacobian of the composition
# is the product of the layers' Jacobians (`Sequential.jacobian()` computes
# it that way), and `backward` passes `g` through the layers in reverse,
# each applying its own `Jᵀ`. The two must agree, and `check_node` also
# checks the gradients of all four parameters of the little network.

# %%
net_rng = np.random.default_rng(3)
net = Sequential(Linear(3, 5, rng=net_rng), ReLU(), Linear(5, 2, rng=net_rng))
x_row = np.array([0.3, -1.2, 0.8])
first, activation, last = net.nodes
h1 = first.evaluate(x_row)  # each layer's Jacobian, taken at its own input
h2 = activation.evaluate(h1)
J1, J2, J3 = first.jacobian(x_row), activation.jacobian(h1), last.jacobian(h2)
out = net.forward(x_row)
np.testing.assert_allclose(out, last.evaluate(h2), **TOL)
chain = J3 @ J2 @ J1
np.testing.assert_allclose(net.jacobian(), chain, **TOL)
g_row = np.array([1.0, -2.0])
np.testing.assert_allclose(net.backward(g_row), chain.T @ g_row, **TOL)
print("J(net) = J3 · J2 · J1 =\n", chain)

net_report = check_node(net, net_rng.standard_normal((6, 3)), rng=net_rng)
print(net_report)
assert net_report.ok
assert len(net_report.comparisons) == 2 + 4  # input gradient twice, then W1, b1, W2, b2

# %% [markdown]
# ## 4. A picture (optional)
#
# With matplotlib installed, `nn_from_scratch.viz.plot_jacobian` draws the
# block-diagonal Jacobian of the Linear layer on a batch; the figure is saved
# to the folder named by `NN_FROM_SCRATCH_FIGURES`, or else to a new temporary
# directory.

# %%
from nn_from_scratch import viz

if viz.available():
    figure = viz.plot_jacobian(layer, X[:2], title="Linear(3, 2), batch of 2")
    print("saved", viz.save_figure(figure, "linear_jacobian.png"))

print("relu_linear_gradients: all checks pass")
