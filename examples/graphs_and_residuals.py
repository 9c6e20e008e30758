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
# # Residual connections: why `x + f(x)` keeps gradients alive
#
# A plain deep network is a chain `y = f_L(⋯ f_2(f_1(x)))`, and its Jacobian
# is the product of the layers' Jacobians, `J = J_L ⋯ J_2 J_1`. When each
# factor shrinks vectors a little, the product shrinks them exponentially in
# the depth: the gradient that reaches the first layers vanishes, and they do
# not learn.
#
# A residual block adds its input back, `y = x + f(x)`, so its Jacobian is
#
#     ∂(x + f(x))/∂x = I + J_f,
#
# and the product over the blocks, `(I + J_L) ⋯ (I + J_1)`, always contains
# the identity path: however small the `J_ℓ` are, the singular values stay
# near 1. `nn_from_scratch.Residual(f)` is that block (`Residual(f,
# shortcut)` computes `shortcut(x) + f(x)`, for blocks that change the shape);
# its backward pass adds the two paths' gradients, `J_fᵀ g + g`. The same
# block can be drawn as a graph with the functional `Graph`, `Input` and `Add`.
#
# This lab builds a deep plain chain and the same layers as residual blocks,
# compares the singular values of their end-to-end Jacobians (from
# `jacobian()`, the dense Jacobian every node gives), shows what that does to
# the first layer's gradient and to training, then trains a residual MLP on
# the digits. Run it with `python examples/graphs_and_residuals.py`; it
# asserts its own numbers and prints `graphs_and_residuals: all checks pass`.

# %%
import copy

import numpy as np

from nn_from_scratch import Linear, NeuralNetwork, ReLU, Residual, Sequential, Tanh
from nn_from_scratch.datasets import load_digits
from nn_from_scratch.gradcheck import numerical_jacobian
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.models import basic_block, resnet
from nn_from_scratch.optim import SGD, Adam

DEPTH, WIDTH, SEED = 30, 16, 0

# %% [markdown]
# ## 1. One block: the Jacobian is `I + J_f`
#
# `Residual(f).jacobian(x)` is the branch's Jacobian plus the identity
# (for a batch of one row of 16 numbers, a `(1, 16, 1, 16)` array), and it
# agrees with central finite differences.

# %%
rng = np.random.default_rng(SEED)
x = rng.standard_normal((1, WIDTH))
branch = Sequential(Linear(WIDTH, WIDTH, rng=rng), Tanh())
block = Residual(branch)
J_block = block.jacobian(x)
identity = np.eye(WIDTH).reshape(1, WIDTH, 1, WIDTH)
np.testing.assert_allclose(J_block, identity + branch.jacobian(x), rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(J_block, numerical_jacobian(block.evaluate, x), rtol=1e-7, atol=1e-8)
print("Residual(f).jacobian(x) = I + J_f, shape", J_block.shape)

# %% [markdown]
# The same block can be written as a functional `Graph`: call nodes on an
# `Input` placeholder and add the branch back with an `Add` node. Here the
# graph and the `Residual` share one `Linear` (the same Parameter objects),
# so they compute the same function, Jacobian and gradients; they differ in
# their state-dict names (`linear_0.weight` in the graph, `f.0.weight` in the
# Residual, which follows its attributes as a torch module would).

# %%
from nn_from_scratch import Add, Graph, Input

shared = branch[0]
placeholder = Input(WIDTH)
graph_block = Graph(inputs=placeholder, outputs=Add()(placeholder, Tanh()(shared(placeholder))))
batch = np.random.default_rng(SEED + 1).standard_normal((3, WIDTH))
upstream = np.random.default_rng(SEED + 2).standard_normal((3, WIDTH))
np.testing.assert_allclose(graph_block.forward(batch), block.forward(batch), rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(graph_block.jacobian(batch), block.jacobian(batch), rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(graph_block.backward(upstream), block.backward(upstream), rtol=1e-12, atol=1e-12)
print(graph_block)
print("graph keys", list(graph_block.state_dict()), "| Residual keys", list(block.state_dict()))

# %% [markdown]
# ## 2. Thirty layers: the plain chain against the residual one
#
# The same thirty `Linear(16, 16)` layers (torch's initialisation), each
# followed by `tanh`, once as a plain chain and once as thirty residual
# blocks. Their end-to-end Jacobians at one input are 16×16 matrices; we
# look at their singular values, the factors by which the network stretches
# or shrinks a small change of its input (and, transposed, a gradient coming
# back).

# %%
rng = np.random.default_rng(SEED)
layers = [Linear(WIDTH, WIDTH, rng=rng) for _ in range(DEPTH)]
plain = Sequential(*[node for layer in layers for node in (copy.deepcopy(layer), Tanh())])
residual = Sequential(*[Residual(Sequential(copy.deepcopy(layer), Tanh())) for layer in layers])


def singular_values(model, x):
    """The singular values of the model's Jacobian at one row ``x``, largest first."""
    return np.linalg.svd(model.jacobian(x).reshape(WIDTH, WIDTH), compute_uv=False)


s_plain, s_residual = singular_values(plain, x), singular_values(residual, x)
print(f"plain chain:     singular values from {s_plain.min():.2e} to {s_plain.max():.2e}")
print(f"residual blocks: singular values from {s_residual.min():.2e} to {s_residual.max():.2e}")

# %% [markdown]
# Why the plain chain collapses: layer `ℓ`'s Jacobian is `D_ℓ W_ℓ`, with
# `D_ℓ = diag(1 − tanh²(z_ℓ))` at its pre-activation `z_ℓ` (entries at most
# 1). A typical direction is shrunk by the layer's root-mean-square gain
# `g_ℓ = ‖D_ℓ W_ℓ‖_F / √16`: torch's initialisation draws `W` uniformly in
# `±1/√16`, so `‖W‖_F / √16 ≈ 1/√3 ≈ 0.58`, and `tanh'` takes a little
# more. Thirty such factors multiply to about `0.56³⁰`, a few times 10⁻⁸. We
# compute the `g_ℓ` along the forward pass and check that their product
# predicts the chain's root-mean-square singular value `‖J‖_F / √16` (to
# within a factor of 10: a product of random matrices fluctuates), and the
# hard bound `σ_max ≤ ∏ ‖D_ℓ W_ℓ‖₂` (no layer can stretch much either).


# %%
def layer_gains(weights, x, residual_sum):
    """(RMS gain ‖D W‖_F/√n, spectral norm ‖D W‖₂) of each layer along the forward pass."""
    gains, norms, h = [], [], x
    for layer in weights:
        z = layer.evaluate(h)
        local = (1 - np.tanh(z[0]) ** 2)[:, None] * layer.weight.value  # D_ℓ W_ℓ
        gains.append(np.linalg.norm(local) / np.sqrt(WIDTH))
        norms.append(np.linalg.norm(local, 2))
        h = h + np.tanh(z) if residual_sum else np.tanh(z)
    return np.array(gains), np.array(norms)


gains, norms = layer_gains(layers, x, residual_sum=False)
predicted = np.prod(gains)
rms_plain = np.sqrt(np.mean(s_plain ** 2))
print(f"plain: mean gain per layer {gains.mean():.3f}, product {predicted:.2e}; "
      f"RMS singular value {rms_plain:.2e}; largest {s_plain.max():.2e} <= {np.prod(norms):.2e}")
assert predicted / 10 < rms_plain < predicted * 10
assert s_plain.max() <= np.prod(norms) * (1 + 1e-9)
# The chain shrinks every direction by more than a million; the residual blocks shrink none by as much as
# a hundred: more than four orders of magnitude between the residual's smallest and the chain's largest.
assert predicted < 1e-6 and s_plain.max() < 1e-6
assert s_residual.min() > 1e-2
assert s_residual.min() / s_plain.max() > 1e4

# %% [markdown]
# With the torch initialisation the branches are not small (`‖D_ℓ W_ℓ‖₂`
# near 1), so the residual product still spreads its singular values over
# about two decades around 1. Scaling each branch's weight by `1/√L` (as
# Fixup and SkipInit do for deep residual networks) makes every
# `a_ℓ = ‖D_ℓ W_ℓ‖₂` below 1; then `∏ (1 − a_ℓ) ≤ σ ≤ ∏ (1 + a_ℓ)` for every
# singular value (loose bounds, but they hold), and the values themselves
# stay within a factor of about 3 of 1, while the plain chain with the same
# small weights collapses even faster.

# %%
small = [copy.deepcopy(layer) for layer in layers]
for layer in small:
    layer.weight.value *= 1 / np.sqrt(DEPTH)
    layer.bias.value *= 1 / np.sqrt(DEPTH)
scaled = Sequential(*[Residual(Sequential(layer, Tanh())) for layer in small])
s_scaled = singular_values(scaled, x)
scaled_norms = layer_gains(small, x, residual_sum=True)[1]
lower, upper = np.prod(1 - scaled_norms), np.prod(1 + scaled_norms)
print(f"scaled residual: singular values from {s_scaled.min():.3f} to {s_scaled.max():.3f}; "
      f"the bounds say [{lower:.2e}, {upper:.2e}]")
assert scaled_norms.max() < 1
assert lower * (1 - 1e-9) <= s_scaled.min() and s_scaled.max() <= upper * (1 + 1e-9)
assert np.all(np.abs(np.log10(s_scaled)) < 0.5)  # within a factor of about 3 of 1
scaled_plain = Sequential(*[node for layer in small for node in (copy.deepcopy(layer), Tanh())])
assert singular_values(scaled_plain, x).max() < s_plain.max()

# %% [markdown]
# ## 3. What it does to the gradient of the first layer
#
# The gradient of the loss with respect to the first layers' weights passes
# through the Jacobians of everything above them. Below, a `Linear(64, 16)`
# takes the 8×8 digits into the chain, a `Linear(16, 10)` reads the classes
# out, and we compare the gradient that reaches the first layer's weight on
# the training set, at the initial weights.

# %%
X_train, y_train, X_test, y_test = load_digits(seed=SEED)


def deep_classifier(residual_blocks, seed=SEED):
    generator = np.random.default_rng(seed)
    model = [Linear(64, WIDTH, rng=generator)]
    for _ in range(DEPTH):
        step = Sequential(Linear(WIDTH, WIDTH, rng=generator), Tanh())
        model.append(Residual(step) if residual_blocks else step)
    return Sequential(*model, Linear(WIDTH, 10, rng=generator))


def first_layer_gradient(model):
    loss = CrossEntropyLoss()
    model.zero_grad()
    loss.forward(model.forward(X_train), y_train)
    model.backward(loss.backward(), input_grad=False)
    norm = np.linalg.norm(model[0].weight.grad)
    model.zero_grad()
    return norm


g_plain = first_layer_gradient(deep_classifier(False))
g_residual = first_layer_gradient(deep_classifier(True))
print(f"|dL/dW| of the first layer: plain {g_plain:.2e}, residual {g_residual:.2e}")
assert g_residual > 1e4 * g_plain

# %% [markdown]
# And so the plain chain does not learn: with the same optimizer (SGD with
# momentum), the same data order and five epochs, the plain network stays
# at chance level while the residual one learns. (An adaptive optimizer such
# as Adam rescales the tiny gradients and can partly hide the problem;
# plain SGD shows it as it is.)

# %%
chance = np.bincount(y_test).max() / len(y_test)
results = {}
for name, residual_blocks in (("plain", False), ("residual", True)):
    model = deep_classifier(residual_blocks)
    network = NeuralNetwork(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.01, momentum=0.9))
    history = network.fit(X_train, y_train, epochs=5, batch_size=32, validation_data=(X_test, y_test),
                          rng=SEED, progress=False)
    results[name] = history
    print(f"{name:8s}: training loss {history['loss'][0]:.3f} -> {history['loss'][-1]:.3f}, "
          f"test accuracy {history['val_accuracy'][-1]:.3f}")
print(f"chance level (the most common test class): {chance:.3f}")
assert results["plain"]["val_accuracy"][-1] < chance + 0.1
assert results["plain"]["loss"][-1] > 0.95 * np.log(10)  # still about the loss of a uniform guess
assert results["residual"]["val_accuracy"][-1] > 0.8
assert results["residual"]["loss"][-1] < 0.5 * results["plain"]["loss"][-1]

# %% [markdown]
# ## 4. A residual MLP on the digits
#
# Two residual blocks `x + Linear(ReLU(Linear(x)))` between an input layer and
# the classifier, trained with Adam: it reaches the accuracy of the plain
# MLP of `examples/mlp_digits.py`.

# %%
rng = np.random.default_rng(SEED)
model = Sequential(
    Linear(64, 64, rng=rng), ReLU(),
    *[Residual(Sequential(Linear(64, 64, rng=rng), ReLU(), Linear(64, 64, rng=rng))) for _ in range(2)],
    ReLU(), Linear(64, 10, rng=rng),
)
print(model.summary((None, 64)))
print("state-dict keys:", ", ".join(list(model.state_dict())[:6]), "...")
assert "2.f.0.weight" in model.state_dict() and "3.f.2.bias" in model.state_dict()
network = NeuralNetwork(model, CrossEntropyLoss(), Adam(model.parameters(), lr=2e-3))
history = network.fit(X_train, y_train, epochs=20, batch_size=32, validation_data=(X_test, y_test), rng=rng,
                      progress=False)
test_accuracy = network.evaluate(X_test, y_test)["accuracy"]
print(f"residual MLP: test accuracy {test_accuracy:.4f}")
assert test_accuracy >= 0.95, test_accuracy

# %% [markdown]
# ## 5. When the block changes the shape: a projection shortcut
#
# A ResNet stage that halves the image and widens the channels cannot add
# `x` itself; its shortcut is a 1×1 convolution with stride 2 and a batch
# norm, and the block computes `ReLU(shortcut(x) + f(x))`. The Jacobian
# before the ReLU is `J_shortcut + J_f`. `models.resnet` stacks such blocks
# (a 3×3 stem, stages of basic blocks, global average pooling, a Linear
# layer).

# %%
block = basic_block(2, 3, stride=2, rng=SEED)
block.eval()
image = np.random.default_rng(SEED).standard_normal((1, 2, 4, 4))
total = Residual(block.f, block.shortcut)  # the same two paths without the ReLU
np.testing.assert_allclose(total.jacobian(image), block.f.jacobian(image) + block.shortcut.jacobian(image),
                           rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(block.jacobian(image), numerical_jacobian(block.evaluate, image), rtol=1e-6, atol=1e-7)
net = resnet(input_shape=(1, 28, 28), num_classes=10, seed=SEED)
print(net.summary((None, 1, 28, 28)))
assert net.evaluate(np.zeros((2, 1, 28, 28))).shape == (2, 10)

# %% [markdown]
# ## Pictures (optional)
#
# With matplotlib installed, the singular values of the three 30-layer
# Jacobians are drawn on a log scale and saved to the folder named by
# `NN_FROM_SCRATCH_FIGURES`, or else to a new temporary directory.

# %%
from nn_from_scratch import viz

if viz.available():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    for values, label in ((s_plain, "plain chain"), (s_residual, "residual blocks"),
                          (s_scaled, "residual, branches scaled 1/√L")):
        axes.semilogy(np.arange(1, WIDTH + 1), values, marker="o", label=label)
    axes.axhline(1.0, color="grey", linewidth=0.8)
    axes.set_xlabel("index (largest first)")
    axes.set_ylabel("singular value of the 30-layer Jacobian")
    axes.set_title(f"{DEPTH} layers of Linear({WIDTH}, {WIDTH}) + tanh")
    axes.legend()
    figure.tight_layout()
    print("saved", viz.save_figure(figure, "residual_singular_values.png"))

print(f"graphs_and_residuals: residual MLP {test_accuracy:.4f}; all checks pass")
