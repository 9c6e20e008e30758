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
# # Convolution, pooling and a small CNN
#
# `Conv2d` slides a small kernel over an image and takes a weighted sum at
# every position. This notebook computes that by hand on tiny inputs and
# compares it with the node, checks its Jacobian and gradients, shows how
# padding and stride change the output, explains the im2col trick the layer
# uses to turn the whole thing into one matrix product, looks at max
# pooling's rule for ties, and finally trains a small CNN on the 8×8 digits.
#
# Images are `(N, C, H, W)` arrays (batch, channels, height, width), and a
# convolution's weight is `(C_out, C_in, kh, kw)`, the layouts of torch.
#
# Run it with `python examples/convolution_cnn.py` (a few seconds on one core).

# %%
import numpy as np

from nn_from_scratch import Conv2d, MaxPool2d, NeuralNetwork
from nn_from_scratch.datasets import load_digits
from nn_from_scratch.gradcheck import check_node, numerical_jacobian
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.models import cnn
from nn_from_scratch.nodes.windows import col2im, conv_output_size, im2col
from nn_from_scratch.optim import Adam, CosineAnnealingLR

TOL = dict(rtol=1e-12, atol=1e-12)

# %% [markdown]
# ## 1. Cross-correlation by hand
#
# What deep learning calls a convolution is, strictly, a
# **cross-correlation**: the kernel is laid on the image as it is, not
# flipped,
#
# `y[i, j] = b + Σ_a Σ_c K[a, c] · x[i + a, j + c]`.
#
# On a 4×4 image a 2×2 kernel fits in 3×3 positions.

# %%
x = np.arange(16.0).reshape(1, 1, 4, 4)
K = np.array([[1.0, 0.0], [0.0, -1.0]])  # the top-left pixel minus the bottom-right one
conv = Conv2d(1, 1, kernel_size=2)
conv.weight.value[...] = K
conv.bias.value[...] = 0.5
y = conv.forward(x)
print("x =\n", x[0, 0])
print("y =\n", y[0, 0])

by_hand = np.zeros((3, 3))
for i in range(3):
    for j in range(3):
        by_hand[i, j] = 0.5 + sum(K[a, c] * x[0, 0, i + a, j + c] for a in range(2) for c in range(2))
np.testing.assert_allclose(y[0, 0], by_hand, **TOL)
np.testing.assert_allclose(y[0, 0], np.full((3, 3), 0.5 - 5.0), **TOL)  # x[i, j] - x[i+1, j+1] = -5 everywhere

# %% [markdown]
# The convolution of signal processing flips the kernel first,
# `y[i, j] = Σ K[a, c] · x[i + 1 − a, j + 1 − c]` for a 2×2 kernel. A network
# learns its kernels, so the flip makes no difference to what it can
# represent: a convolution is a cross-correlation with the kernel turned by
# 180°.

# %%
true_conv = np.zeros((3, 3))
for i in range(3):
    for j in range(3):
        true_conv[i, j] = sum(K[a, c] * x[0, 0, i + 1 - a, j + 1 - c] for a in range(2) for c in range(2))
flipped = Conv2d(1, 1, 2, bias=False)
flipped.weight.value[0, 0] = K[::-1, ::-1]
np.testing.assert_allclose(flipped.forward(x)[0, 0], true_conv, **TOL)
print("true convolution (kernel flipped) =\n", true_conv)

# %% [markdown]
# With several channels, each output channel `o` sums the correlations of
# every input channel `c` with its own slice `W[o, c]` of the kernel, plus
# one bias per output channel:
#
# `y[n, o, i, j] = b[o] + Σ_c Σ_a Σ_β W[o, c, a, β] · x[n, c, i + a, j + β]`.

# %%
rng = np.random.default_rng(0)
conv = Conv2d(2, 3, kernel_size=3, rng=rng)
x = rng.standard_normal((2, 2, 5, 6))
y = conv.forward(x)
W, b = conv.weight.value, conv.bias.value
assert y.shape == (2, 3, 3, 4)
loops = np.zeros(y.shape)
for n in range(2):
    for o in range(3):
        for i in range(3):
            for j in range(4):
                loops[n, o, i, j] = b[o] + np.sum(W[o] * x[n, :, i:i + 3, j:j + 3])
np.testing.assert_allclose(y, loops, rtol=1e-12, atol=1e-12)
print("Conv2d(2, 3, 3) on", x.shape, "->", y.shape, ": matches the loops")

# %% [markdown]
# ## 2. Padding and stride
#
# **Padding** `p` surrounds the image with `p` rings of zeros, so that the
# kernel can also sit over the border. **Stride** `s` moves the kernel `s`
# pixels at a time. Along each axis the output has
#
# `H_out = ⌊(H + 2p − k) / s⌋ + 1`
#
# positions. A 3×3 kernel with padding 1 and stride 1 keeps the size (the
# usual "same" convolution); stride 2 halves it, rounding up for odd sizes.

# %%
for size, k, s, p in [(5, 3, 1, 0), (5, 3, 1, 1), (5, 3, 2, 1), (6, 3, 2, 1), (8, 3, 1, 1), (7, 2, 2, 0)]:
    expected = (size + 2 * p - k) // s + 1
    assert conv_output_size((size, size), k, s, p) == (expected, expected)
    assert Conv2d(1, 1, k, stride=s, padding=p).output_size(size, size) == (expected, expected)
    print(f"H={size}, k={k}, stride={s}, padding={p}: H_out={expected}")

strided = Conv2d(2, 3, kernel_size=3, stride=2, padding=1, rng=rng)
x = rng.standard_normal((2, 2, 5, 5))
y = strided.forward(x)
assert y.shape == (2, 3, 3, 3)
padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))  # the zeros the layer imagines
W, b = strided.weight.value, strided.bias.value
loops = np.zeros(y.shape)
for n in range(2):
    for o in range(3):
        for i in range(3):
            for j in range(3):
                loops[n, o, i, j] = b[o] + np.sum(W[o] * padded[n, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3])
np.testing.assert_allclose(y, loops, rtol=1e-12, atol=1e-12)

# %% [markdown]
# ## 3. Gradients
#
# A convolution is linear in its input, so its Jacobian is a (large, mostly
# zero) matrix of weights: output `(n, o, i, j)` depends only on the `C_in ·
# kh · kw` inputs under its window. With the upstream gradient `G`:
#
# * `dL/dx` spreads each `G[n, o, i, j]` back over the window it came from,
#   weighted by `W[o]`: a *transposed* convolution;
# * `dL/dW[o, c, a, β] = Σ_{n,i,j} G[n, o, i, j] · x̃[n, c, s·i + a, s·j + β]`,
#   a correlation of the (padded) input `x̃` with `G`;
# * `dL/db[o] = Σ_{n,i,j} G[n, o, i, j]`.
#
# We write all three as loops and compare them with `backward`, then let
# `check_node` compare everything with finite differences.

# %%
G = rng.standard_normal(y.shape)
strided.zero_grad()
dx = strided.backward(G, reset_after=False)

dx_padded = np.zeros_like(padded)
dW = np.zeros_like(W)
for n in range(2):
    for o in range(3):
        for i in range(3):
            for j in range(3):
                window = (n, slice(None), slice(2 * i, 2 * i + 3), slice(2 * j, 2 * j + 3))
                dx_padded[window] += G[n, o, i, j] * W[o]
                dW[o] += G[n, o, i, j] * padded[window]
np.testing.assert_allclose(dx, dx_padded[:, :, 1:-1, 1:-1], rtol=1e-12, atol=1e-12)  # drop the padding
np.testing.assert_allclose(strided.weight.grad, dW, rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(strided.bias.grad, G.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)

J = strided.jacobian()
assert J.shape == y.shape + x.shape == (2, 3, 3, 3, 2, 2, 5, 5)
np.testing.assert_allclose(np.tensordot(G, J, axes=4), dx, rtol=1e-12, atol=1e-12)
nonzero_per_output = np.count_nonzero(J.reshape(y.size, x.size), axis=1)
print("inputs each output depends on: min", nonzero_per_output.min(), "max", nonzero_per_output.max(),
      f"(of {x.size}; a full window is 2·3·3 = 18, fewer at the padded border)")
assert nonzero_per_output.max() == 18 and nonzero_per_output.min() == 2 * 2 * 2

report = check_node(strided, x, G)
print(report)
assert report.ok

# %% [markdown]
# ## 4. im2col: a convolution as one matrix product
#
# Looping over output positions in Python is slow. `im2col` copies every
# window of the image into a column: for each sample a matrix `X_n` of shape
# `(C_in·kh·kw, H_out·W_out)`, one column per output position, one row per
# kernel tap. Flattening the weight to `W̄` of shape `(C_out, C_in·kh·kw)`,
# the convolution becomes a single matrix product per sample,
#
# `Y_n = W̄ X_n + b`,
#
# which lands directly in `(C_out, H_out·W_out)`, the NCHW layout. The
# backward pass uses the same columns: `dL/dW̄ = Σ_n G_n X_nᵀ`, and
# `dL/dX_n = W̄ᵀ G_n`, which `col2im` adds back onto the pixels the columns
# were copied from. `col2im` is the adjoint (transpose) of `im2col`:
# `⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩` for any `x` and `c`.

# %%
cols = im2col(x, kernel_size=3, stride=2, padding=1)
print("im2col:", x.shape, "->", cols.shape, "(N, C, kh, kw, H_out, W_out)")
assert cols.shape == (2, 2, 3, 3, 3, 3)
np.testing.assert_array_equal(cols[1, 0, :, :, 1, 2], padded[1, 0, 2:5, 4:7])  # one window, as it is
X_mat = cols.reshape(2, 2 * 3 * 3, 3 * 3)
W_bar = W.reshape(3, -1)
Y_mat = W_bar @ X_mat + b[:, None]
np.testing.assert_allclose(Y_mat.reshape(y.shape), y, rtol=1e-12, atol=1e-12)
np.testing.assert_allclose((G.reshape(2, 3, 9) @ X_mat.transpose(0, 2, 1)).sum(axis=0),
                           dW.reshape(3, -1), rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(col2im(W_bar.T @ G.reshape(2, 3, 9), x.shape, 3, 2, 1), dx,
                           rtol=1e-12, atol=1e-12)

c = rng.standard_normal(cols.shape)
np.testing.assert_allclose(np.sum(im2col(x, 3, 2, 1) * c), np.sum(x * col2im(c, x.shape, 3, 2, 1)),
                           rtol=1e-12, atol=1e-12)
print("conv = W̄ @ im2col(x) + b; backward through col2im; <im2col x, c> = <x, col2im c>")

# %% [markdown]
# ## 5. Max pooling and its ties
#
# `MaxPool2d(2)` keeps the largest value of each 2×2 block. Its derivative
# is 1 for the position of the maximum and 0 elsewhere, so the gradient of
# each output goes back to one input only. When a window holds its maximum
# twice the max is not differentiable there, and a library has to choose:
# `nn_from_scratch` sends the gradient to the **first** maximum of the window
# in row-major order (top row first, then left to right), as torch does.

# %%
pool = MaxPool2d(2)
x = np.array([[[[1.0, 3.0, 2.0, 2.0],
                [3.0, 0.0, 2.0, 2.0],
                [0.0, 0.0, 5.0, -1.0],
                [0.0, 4.0, 7.0, 6.0]]]])
y = pool.forward(x)
print("x =\n", x[0, 0], "\nMaxPool2d(2)(x) =\n", y[0, 0])
np.testing.assert_allclose(y[0, 0], [[3.0, 2.0], [4.0, 7.0]], **TOL)
g = np.array([[[[10.0, 20.0], [30.0, 40.0]]]])
dx = pool.backward(g, reset_after=False)
print("backward(g) =\n", dx[0, 0])
expected = np.zeros((4, 4))
expected[0, 1] = 10.0  # 3 appears at (0, 1) and (1, 0): the first in row-major order wins
expected[0, 2] = 20.0  # a window of four 2s: its top-left entry
expected[3, 1] = 30.0
expected[3, 2] = 40.0
np.testing.assert_allclose(dx[0, 0], expected, **TOL)
np.testing.assert_allclose(np.tensordot(g, pool.jacobian(), axes=4), dx, **TOL)

# %% [markdown]
# At a tie, finite differences see neither choice: nudging one of the tied
# entries up makes it the maximum, nudging it down hands the maximum to the
# other, so the central difference gives 1/2 to each. As with ReLU at 0,
# gradient checks belong away from ties; on random inputs (no ties) the
# check passes, also for overlapping windows (kernel 3, stride 1), where an
# input that is the maximum of several windows collects all their gradients.

# %%
numeric = numerical_jacobian(pool.evaluate, x).reshape(4, 16)
print("finite differences for the first window:", numeric[0, [1, 4]], "at the two tied 3s")
np.testing.assert_allclose(numeric[0, [1, 4]], [0.5, 0.5], rtol=1e-6, atol=1e-9)

overlapping = MaxPool2d(3, stride=1)
x = rng.standard_normal((2, 2, 5, 5))
report = check_node(overlapping, x)
print(report)
assert report.ok
overlapping.forward(x)
hits = overlapping.backward(np.ones((2, 2, 3, 3)))
assert hits.max() >= 2 and hits.sum() == 2 * 2 * 9  # some inputs win several windows

# %% [markdown]
# ## 6. A small CNN on the digits
#
# `models.cnn(1, 8, 10, channels=(16, 32), hidden=64)` stacks, for each
# entry of `channels`, a 3×3 convolution with padding 1, a ReLU and a 2×2
# max pool (8×8 → 4×4 → 2×2), then flattens and ends with two Linear layers.
# The digits come as `(N, 1, 8, 8)` images with `load_digits(flatten=False)`.

# %%
X_train, y_train, X_test, y_test = load_digits(flatten=False, seed=0)
assert X_train.shape == (1438, 1, 8, 8)
EPOCHS = 15
rng = np.random.default_rng(0)
model = cnn(1, 8, 10, channels=(16, 32), hidden=64, rng=rng)
print(model.summary((None, 1, 8, 8)))
optimizer = Adam(model.parameters(), lr=3e-3)
network = NeuralNetwork(model, CrossEntropyLoss(), optimizer, CosineAnnealingLR(optimizer, T_max=EPOCHS))
history = network.fit(X_train, y_train, epochs=EPOCHS, batch_size=32, rng=rng, progress=False)
result = network.evaluate(X_test, y_test)
print(f"CNN after {EPOCHS} epochs: training loss {history['loss'][0]:.3f} -> {history['loss'][-1]:.3f}, "
      f"test accuracy {result['accuracy']:.4f}")
assert history["loss"][-1] < 0.1 * history["loss"][0]
assert result["accuracy"] >= 0.96, result

# %% [markdown]
# What did the first layer learn? Its sixteen 3×3 kernels can be drawn as
# tiny images (with matplotlib, saved to the folder named by
# `NN_FROM_SCRATCH_FIGURES`, or else to a new temporary directory).

# %%
from nn_from_scratch import viz

if viz.available():
    kernels = model.nodes[0].weight.value[:, 0]
    limit = float(abs(kernels).max())  # one scale centred at zero: blue negative, red positive weights
    figure = viz.plot_images(kernels, ncols=8, cmap="RdBu_r", title="the first layer's 3x3 kernels",
                             colorbar=True, vmin=-limit, vmax=limit)
    print("saved", viz.save_figure(figure, "cnn_first_layer_kernels.png"))

print(f"convolution_cnn: CNN test accuracy {result['accuracy']:.4f}; all checks pass")
