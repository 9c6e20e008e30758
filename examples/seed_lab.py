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
# # The backpropagation lab that started this library, replayed
#
# The lab implemented two nodes, SoftMax and NormalizedSoftMax, each with a
# forward pass, a Jacobian and a backward pass, and checked them against
# SymPy. Its cells run here as they were written, against the library, with
# two corrections:
#
# * the checks are two-sided (`np.testing.assert_allclose`); the lab's
#   `((a - b) < 1e-3).all()` passes whenever `a` is *smaller* than `b`, by any
#   amount;
# * the NormalizedSoftMax gradient is compared with `Jᵀ g`. The lab
#   compared it with `J g`, which is not the gradient, because the Jacobian
#   of NormalizedSoftMax is not symmetric (section 2 shows why).
#
# Run it with `python examples/seed_lab.py` (needs the `symbolic` extra).
#
# Requires: sympy

# %%
import numpy as np
import sympy as sp

from nn_from_scratch.nodes import NormalizedSoftMax, SoftMax

# %% [markdown]
# ## 1. Softmax
#
# `y_i = exp(x_i) / Σ_k exp(x_k)`. Its Jacobian is `diag(y) − y yᵀ`, and the
# backward pass is the vector–Jacobian product
# `dL/dx_j = Σ_i dL/dy_i · ∂y_i/∂x_j = y_j (g_j − ⟨y, g⟩)`.

# %%
sm = SoftMax(5)
x_input = np.array([0, 1, 2, 3, 4])
dL_dy = np.array([1, 2, 3, 2, 1])
y_value = sm.forward(x_input)
dL_dx = sm.backward(dL_dy)
print("SoftMax forward ", y_value)
print("SoftMax backward", dL_dx)

# %% [markdown]
# The same function written with SymPy: SymPy derives the Jacobian from the
# formula and `lambdify` turns both into NumPy functions. The gradient is
# `Jᵀ g`, which for a row vector `g` is `g @ J`.

# %%
n = 5
x = sp.symbols(" ".join([f"x_{i}" for i in range(n)]))
exp_x = sp.Matrix([sp.exp(x_i) for x_i in x])
softmax = exp_x / sum(exp_x)
softmax_jac = softmax.jacobian(x)
softmax_lambda = sp.lambdify(x, softmax)
jacobian_lambda = sp.lambdify(x, softmax_jac)
y_value_sp = softmax_lambda(*x_input).ravel()
dL_dx_sp = (dL_dy @ jacobian_lambda(*x_input)).ravel()  # J^T g
np.testing.assert_allclose(y_value, y_value_sp, rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(dL_dx, dL_dx_sp, rtol=1e-12, atol=1e-12)

# %% [markdown]
# `SoftMax((2, 5))` works row by row on a `(2, 5)` matrix: each row gives the
# same result as the vector above.

# %%
sm = SoftMax((2, 5))
x_input = np.array([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]])
dL_dy = np.array([[1, 2, 3, 2, 1], [1, 2, 3, 2, 1]])
y_value = sm.forward(x_input)
dL_dx = sm.backward(dL_dy)
for i in range(2):
    np.testing.assert_allclose(y_value[i], y_value_sp, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dL_dx[i], dL_dx_sp, rtol=1e-12, atol=1e-12)

# %% [markdown]
# ## 2. Normalized SoftMax
#
# NormalizedSoftMax divides the row by its largest magnitude `a = |x_k|`
# before the softmax: `y = softmax(x / a)`. By the chain rule
#
# `∂y/∂x = (∂y/∂x̂)(∂x̂/∂x)`, with `x̂ = x / a`,
#
# where `∂y/∂x̂` is the softmax Jacobian at `x̂` and `∂x̂_i/∂x_j = δ_ij / a`,
# except in the column `j = k` of the largest element, which also moves the
# scale: `∂x̂_i/∂x_k = δ_ik / a − x_i / a²` (for `x_k > 0`). That extra column
# breaks the symmetry of the softmax Jacobian, so `J g` and `Jᵀ g` differ,
# and only `Jᵀ g` is the gradient. (For the plain softmax they coincide, which
# is how the lab's mistake went unnoticed there.)

# %%
sm = NormalizedSoftMax(5)
x_input = np.array([0, 1, 4, 2, 3])
dL_dy = np.array([1, 2, 3, 2, 1])
y_value = sm.forward(x_input)
dL_dx = sm.backward(dL_dy, reset_after=False)
print("NormalizedSoftMax forward ", y_value)
print("NormalizedSoftMax backward", dL_dx)

# %% [markdown]
# The SymPy check, as in the lab, divides by `x_2`, the largest element of
# this input. Printing `J g` shows the vector the lab reported as the
# gradient.

# %%
x = sp.symbols(" ".join([f"x_{i}" for i in range(n)]))
x_norm = sp.Matrix([x_i / x[2] for x_i in x])  # x[2] is the largest element here
exp_x_norm = sp.Matrix([sp.exp(x_norm_i) for x_norm_i in x_norm])
softmax_norm = exp_x_norm / sum(exp_x_norm)
softmax_norm_jac = softmax_norm.jacobian(x)
softmax_lambda = sp.lambdify(x, softmax_norm)
jacobian_lambda = sp.lambdify(x, softmax_norm_jac)
y_value_sp = softmax_lambda(*x_input).ravel()
jac = jacobian_lambda(*x_input)
dL_dx_sp = (dL_dy @ jac).ravel()  # J^T g, the gradient
print("the notebook's J g         ", (jac @ dL_dy).ravel())
np.testing.assert_allclose(y_value, y_value_sp, rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(dL_dx, dL_dx_sp, rtol=1e-12, atol=1e-12)

# %% [markdown]
# The node's own Jacobian (kept because of `reset_after=False` above) is the
# same matrix, it is not symmetric, and `J g` is indeed the lab's vector.

# %%
J = sm.jacobian()
np.testing.assert_allclose(J, jac, rtol=1e-12, atol=1e-12)
assert not np.allclose(J, J.T)
np.testing.assert_allclose(J @ dL_dy, [0.02596599, 0.04249374, -0.00692263, 0.01930594, -0.08084303],
                           rtol=1e-6, atol=1e-8)

# %% [markdown]
# Row by row, as for SoftMax.

# %%
sm = NormalizedSoftMax((2, 5))
x_input = np.array([[0, 1, 4, 2, 3], [0, 1, 4, 2, 3]])
dL_dy = np.array([[1, 2, 3, 2, 1], [1, 2, 3, 2, 1]])
y_value = sm.forward(x_input)
dL_dx = sm.backward(dL_dy)
for i in range(2):
    np.testing.assert_allclose(y_value[i], y_value_sp, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dL_dx[i], dL_dx_sp, rtol=1e-12, atol=1e-12)
print("all of the lab's checks pass")
