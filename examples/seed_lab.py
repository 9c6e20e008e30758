"""The backpropagation lab that started this library, replayed against it.

Each cell of the original notebook runs here as it was written; the checks
are two-sided, and the NormalizedSoftMax check uses the gradient J^T g
(the notebook compared against J g, which is not the gradient because the
Jacobian of NormalizedSoftMax is not symmetric).

Run it with ``python examples/seed_lab.py`` (needs the ``symbolic`` extra).
"""
import numpy as np
import sympy as sp

from nn_from_scratch.nodes import NormalizedSoftMax, SoftMax

# Part 1. Softmax
sm = SoftMax(5)
x_input = np.array([0, 1, 2, 3, 4])
dL_dy = np.array([1, 2, 3, 2, 1])
y_value = sm.forward(x_input)
dL_dx = sm.backward(dL_dy)
print("SoftMax forward ", y_value)
print("SoftMax backward", dL_dx)

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

sm = SoftMax((2, 5))
x_input = np.array([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]])
dL_dy = np.array([[1, 2, 3, 2, 1], [1, 2, 3, 2, 1]])
y_value = sm.forward(x_input)
dL_dx = sm.backward(dL_dy)
for i in range(2):
    np.testing.assert_allclose(y_value[i], y_value_sp, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dL_dx[i], dL_dx_sp, rtol=1e-12, atol=1e-12)

# Part 2. Normalized SoftMax
sm = NormalizedSoftMax(5)
x_input = np.array([0, 1, 4, 2, 3])
dL_dy = np.array([1, 2, 3, 2, 1])
y_value = sm.forward(x_input)
dL_dx = sm.backward(dL_dy, reset_after=False)
print("NormalizedSoftMax forward ", y_value)
print("NormalizedSoftMax backward", dL_dx)

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

sm = NormalizedSoftMax((2, 5))
x_input = np.array([[0, 1, 4, 2, 3], [0, 1, 4, 2, 3]])
dL_dy = np.array([[1, 2, 3, 2, 1], [1, 2, 3, 2, 1]])
y_value = sm.forward(x_input)
dL_dx = sm.backward(dL_dy)
for i in range(2):
    np.testing.assert_allclose(y_value[i], y_value_sp, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dL_dx[i], dL_dx_sp, rtol=1e-12, atol=1e-12)
print("all of the lab's checks pass")
