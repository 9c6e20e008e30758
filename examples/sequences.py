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
# # Recurrent layers and backpropagation through time
#
# A recurrent layer applies one step, `s_t = F(x_t, s_{t-1})`, along a
# sequence. This notebook
#
# 1. takes an Elman cell's Jacobian by hand and by `jacobian()`;
# 2. writes backpropagation through time (BPTT) as a product of the steps'
#    Jacobians and checks it against the layer's own backward pass;
# 3. trains an RNN, a GRU and an LSTM on a small memory task (recall, at the
#    last step, the sign given at the first) and shows their answers;
# 4. measures, on those trained layers and the same sequence, how the
#    gradient of the last state with respect to each earlier one shrinks
#    over time (`nn_from_scratch.viz.bptt_jacobians`), and plots it
#    (`plot_bptt`): the vanishing gradient the textbooks describe, on real
#    models.
#
# Run it with `python examples/sequences.py`; it asserts its own numbers and
# prints `sequences: all checks pass` at the end.

# %%
import copy

import numpy as np

from nn_from_scratch import viz
from nn_from_scratch.nodes import GRU, LSTM, RNN, Linear, RNNCell
from nn_from_scratch.optim import Adam

TOL = dict(rtol=1e-12, atol=1e-13)  # for quantities that must agree to rounding
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. One step of an Elman network, and its Jacobian
#
# `RNNCell` is torch's: `h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)`. With
# `a` the pre-activation, the chain rule gives
#
# * `∂h'/∂h = diag(1 − h'²) W_hh`
# * `∂h'/∂x = diag(1 − h'²) W_ih`
#
# `jacobian()` returns one block per input, `(∂h'/∂x, ∂h'/∂h)`.

# %%
cell = RNNCell(3, 4, rng=1)
x, h = rng.standard_normal(3), rng.standard_normal(4) * 0.5
h_new = cell.forward(x, h)
J_x, J_h = cell.jacobian()
slope = np.diag(1 - h_new ** 2)
print("∂h'/∂h by jacobian():\n", np.round(J_h, 4))
np.testing.assert_allclose(J_h, slope @ cell.weight_hh.value, **TOL)
np.testing.assert_allclose(J_x, slope @ cell.weight_ih.value, **TOL)

# %% [markdown]
# The backward pass is the vector–Jacobian product, block by block; with one
# flag per input (`input_grad=(False, True)`) the input's block is skipped, which is
# what a loop through time wants at every step where it needs only `∂L/∂h`.

# %%
g = rng.standard_normal(4)
ctx = cell.run(x, h)
dx, dh = cell.vjp_from(ctx, g)
np.testing.assert_allclose(dx, g @ J_x, **TOL)
np.testing.assert_allclose(dh, g @ J_h, **TOL)
skipped = cell.backward_from(ctx, g, input_grad=(False, True))
assert skipped[0] is None
np.testing.assert_allclose(skipped[1], dh, **TOL)
cell.zero_grad()

# %% [markdown]
# ## 2. BPTT is a product of Jacobians
#
# Over `T` steps, `∂h_T/∂h_0 = J_T J_{T−1} ⋯ J_1` with `J_t = ∂h_t/∂h_{t−1}`.
# We build it from explicit step Jacobians and compare `uᵀ ∂h_T/∂h_0` with
# the gradient the whole `RNN` layer's backward pass gives its initial state
# for the loss `L = u · h_T`.

# %%
rnn = RNN(3, 4, rng=1)  # the same draws as the cell: the same weights
for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
    np.testing.assert_array_equal(getattr(rnn, name + "_l0").value, getattr(cell, name).value)
T = 12
xs = rng.standard_normal((T, 3))
h0 = rng.standard_normal(4) * 0.5
product, state = np.eye(4), h0
for t in range(T):
    state = cell.forward(xs[t], state)
    _, J_t = cell.jacobian()
    product = J_t @ product
u = rng.standard_normal(4)
output, h_T = rnn.forward(xs, h0[None, :])  # one sequence: x (T, 3), h0 (1, 4)
np.testing.assert_allclose(h_T[0], state, **TOL)
_, dh0 = rnn.backward((np.zeros_like(output), u[None, :]))
np.testing.assert_allclose(dh0[0], u @ product, **TOL)
print(f"‖∂h_T/∂h_0‖ over {T} steps of the untrained RNN: {np.linalg.norm(product, 2):.3g}")

# %% [markdown]
# `bptt_jacobians` does this for any RNN, GRU or LSTM (for the LSTM the state
# is `(h, c)`), and keeps every product `∂s_T/∂s_t`, not just the first.

# %%
analysis = viz.bptt_jacobians(rnn, xs, (h0,))
np.testing.assert_allclose(analysis.products[0], product, **TOL)

# %% [markdown]
# ## 3. A memory task: recall the first sign
#
# Each sequence has `T = 16` steps of one feature: the first is `±1`, the rest
# are noise. The target, read from the last step's output through a `Linear`
# layer, is the first step's sign. A model that forgets scores the baseline
# mean squared error of 1; the gradient that teaches it to remember has to
# travel back all 16 steps.

# %%
T, HIDDEN, BATCH = 16, 12, 64


def batch(size, generator):
    signs = generator.choice([-1.0, 1.0], size=size)
    x = generator.standard_normal((size, T, 1)) * 0.3
    x[:, 0, 0] = signs
    return x, signs[:, None]


def train(layer, steps=200, seed=0):
    """Adam on the mean squared error of the last step's readout; returns the readout and the losses."""
    generator = np.random.default_rng(seed)
    readout = Linear(HIDDEN, 1, rng=seed)
    optimizer = Adam(list(layer.parameters()) + list(readout.parameters()), lr=0.01)
    losses = []
    for _ in range(steps):
        x, target = batch(BATCH, generator)
        optimizer.zero_grad()
        outputs = layer.forward(x)
        prediction = readout.forward(outputs[0][:, -1])
        losses.append(float(np.mean((prediction - target) ** 2)))
        g_last = readout.backward(2 * (prediction - target) / BATCH)
        g_output = np.zeros_like(outputs[0])
        g_output[:, -1] = g_last
        layer.backward((g_output,) + (None,) * (len(outputs) - 1))
        optimizer.step()
    return readout, losses


models = {"RNN": RNN(1, HIDDEN, batch_first=True, rng=2), "GRU": GRU(1, HIDDEN, batch_first=True, rng=2),
          "LSTM": LSTM(1, HIDDEN, batch_first=True, rng=2)}
# torch's initialisation starts the LSTM's forget gate near σ(0) = 1/2, which halves the cell state at every step;
# the usual remedy (Gers et al., 2000; Jozefowicz et al., 2015) is a forget-gate bias of 1: gates i, f, g, o
models["LSTM"].bias_ih_l0.value[HIDDEN:2 * HIDDEN] += 1.0
untrained = {name: copy.deepcopy(layer) for name, layer in models.items()}
readouts, test_x, test_y = {}, *batch(256, np.random.default_rng(99))
for name, layer in models.items():
    readout, losses = train(layer)
    readouts[name] = readout
    prediction = readout.evaluate(layer.evaluate(test_x)[0][:, -1])
    accuracy = np.mean(np.sign(prediction) == test_y)
    print(f"{name:5s} loss {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f}; sign recalled on {accuracy:.0%} of new "
          f"sequences")
    assert np.all(np.isfinite(losses)) and np.mean(losses[-10:]) < losses[0]

# %% [markdown]
# Samples: the first input and each model's answer on a few new sequences.

# %%
for i in [*np.flatnonzero(test_y[:, 0] > 0)[:2], *np.flatnonzero(test_y[:, 0] < 0)[:2]]:
    answers = ", ".join(f"{name} {readouts[name].evaluate(layer.evaluate(test_x[i:i + 1])[0][:, -1])[0, 0]:+.2f}"
                        for name, layer in models.items())
    print(f"first input {test_x[i, 0, 0]:+.0f}: {answers}")

# %% [markdown]
# ## 4. The gradient through time, measured before and after training
#
# On one test sequence, `‖∂h_T/∂h_t‖` for every `t` and the singular values
# of `∂s_T/∂s_t` (for the LSTM `s = (h, c)`): how much of a change in the
# state at step `t` still reaches the last step. At initialisation the
# products shrink geometrically with `T − t`, the vanishing gradient; a model
# that learned to carry the first sign to the end has products that no longer
# vanish along the path that carries it (for the LSTM that path is the cell
# state `c`, so look at the largest singular value rather than the `h` block).

# %%
sequence = test_x[0]
analyses = {}
for name in models:
    analyses[f"{name} untrained"] = viz.bptt_jacobians(untrained[name], sequence)
    analyses[f"{name} trained"] = viz.bptt_jacobians(models[name], sequence)
for name, result in analyses.items():
    norms, largest = result.norms, result.singular_values[:, 0]
    print(f"{name:15s} ‖∂h_T/∂h_0‖ {norms[0]:.1e}, largest singular value of ∂s_T/∂s_0 {largest[0]:.1e}")
    assert np.all(np.isfinite(norms)) and norms[T] == 1.0
    np.testing.assert_allclose(result.products[T], np.eye(result.products.shape[1]))
    # each product is the one after it times a step's Jacobian
    np.testing.assert_allclose(result.products[0], result.products[1] @ result.steps[0], rtol=1e-12, atol=1e-15)
for name in models:  # training made the first step's state reach the last one
    assert analyses[f"{name} trained"].singular_values[0, 0] > analyses[f"{name} untrained"].singular_values[0, 0]

if viz.available():
    figure = viz.plot_bptt(analyses, title="The gradient reaching step t, before and after the memory task")
    print("saved", viz.save_figure(figure, "bptt.png"))

print("sequences: all checks pass")
