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
# # A multilayer perceptron on the handwritten digits
#
# The digits that ship inside the package are 1797 greyscale images of
# 8×8 pixels, ten classes. `load_digits()` splits them into a fixed, seeded,
# stratified training set (1438 images) and test set (359 images), with the
# pixels scaled to [0, 1] and each image flattened to 64 numbers.
#
# We build an MLP `64 → 128 → 64 → 10` from `Linear` and `ReLU` nodes, train
# it with mini-batch Adam on the cross-entropy of its logits, and check that
# it classifies at least 95% of the test images correctly (it reaches about
# 97%). Then we train the same network with plain SGD with momentum, and look
# at what it gets wrong.
#
# Run it with `python examples/mlp_digits.py` (a few seconds on one core).

# %%
import numpy as np

from nn_from_scratch import NeuralNetwork
from nn_from_scratch.datasets import load_digits
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.metrics import accuracy
from nn_from_scratch.models import mlp
from nn_from_scratch.optim import SGD, Adam, CosineAnnealingLR

SEED = 0
EPOCHS = 30

# %% [markdown]
# ## The data

# %%
X_train, y_train, X_test, y_test = load_digits(seed=SEED)
print("train", X_train.shape, "test", X_test.shape)
print("pixel range", X_train.min(), X_train.max())
print("test images per class", np.bincount(y_test, minlength=10))
assert X_train.shape == (1438, 64) and X_test.shape == (359, 64)
assert X_train.min() == 0.0 and X_train.max() == 1.0
assert np.bincount(y_test, minlength=10).min() >= 35  # stratified: every class is in the test set

# %% [markdown]
# A classifier that always answers the most common training class would be
# right this often on the test set; anything we train has to beat it by far.

# %%
majority = np.bincount(y_train).argmax()
baseline = accuracy(np.full_like(y_test, majority), y_test)
print(f"always class {majority}: test accuracy {baseline:.3f}")
assert baseline < 0.12

# %% [markdown]
# ## The model
#
# `models.mlp(64, [128, 64], 10)` is `Sequential(Linear(64, 128), ReLU(),
# Linear(128, 64), ReLU(), Linear(64, 10))`. The last layer gives logits;
# `CrossEntropyLoss` applies the (log-)softmax itself, which is both cheaper
# and numerically safer than a SoftMax node followed by a log. Every random
# choice (the initial weights, the order of the batches) comes from one
# seeded generator, so the run is the same every time.
#
# `summary` runs one forward pass of zeros through the model and lists the
# layers, their output shapes and their parameter counts.

# %%
rng = np.random.default_rng(SEED)
model = mlp(64, [128, 64], 10, rng=rng)
table = model.summary((None, 64))
print(table)
n_params = sum(p.value.size for p in model.parameters())
assert n_params == (64 * 128 + 128) + (128 * 64 + 64) + (64 * 10 + 10) == 17226
assert "17,226" in table or "17226" in table

# %% [markdown]
# ## Training with Adam
#
# `NeuralNetwork` ties the model, the loss, the optimizer and an optional
# learning-rate schedule together. `fit` shuffles the training set into
# batches of 32 every epoch, and for each batch runs the forward pass, the
# loss, `model.backward(loss.backward())` and an optimizer step. The cosine
# schedule lowers the learning rate smoothly to zero over the epochs.

# %%
optimizer = Adam(model.parameters(), lr=3e-3)
network = NeuralNetwork(model, CrossEntropyLoss(), optimizer, CosineAnnealingLR(optimizer, T_max=EPOCHS))
history = network.fit(X_train, y_train, epochs=EPOCHS, batch_size=32,
                      validation_data=(X_test, y_test), rng=rng, progress=False)
for epoch in (1, 2, 5, 10, 20, EPOCHS):
    print(f"epoch {epoch:2d}: loss {history['loss'][epoch - 1]:.4f}  "
          f"train accuracy {history['accuracy'][epoch - 1]:.3f}  "
          f"test accuracy {history['val_accuracy'][epoch - 1]:.3f}")

result = network.evaluate(X_test, y_test)
adam_accuracy = result["accuracy"]
print(f"Adam: test loss {result['loss']:.4f}, test accuracy {adam_accuracy:.4f}")
assert len(history["loss"]) == EPOCHS
assert history["loss"][-1] < 0.1 * history["loss"][0]  # the training loss fell by more than ten times
assert adam_accuracy >= 0.95, adam_accuracy
np.testing.assert_allclose(adam_accuracy, history["val_accuracy"][-1], rtol=1e-12, atol=1e-12)

# %% [markdown]
# `predict` gives class indices and `predict_proba` the softmax
# probabilities; both run the model in evaluation mode, in batches.

# %%
predicted = network.predict(X_test)
probabilities = network.predict_proba(X_test)
np.testing.assert_allclose(probabilities.sum(axis=1), np.ones(len(X_test)), rtol=1e-12, atol=1e-12)
np.testing.assert_array_equal(predicted, probabilities.argmax(axis=1))
np.testing.assert_allclose(accuracy(predicted, y_test), adam_accuracy, rtol=1e-12, atol=1e-12)

# %% [markdown]
# ## Where it goes wrong
#
# The confusion matrix counts, for each true class (row), how often each
# class was predicted (column). Its diagonal holds the correct answers.

# %%
confusion = np.zeros((10, 10), dtype=int)
np.add.at(confusion, (y_test, predicted), 1)
print("rows: true class, columns: predicted class")
print(confusion)
assert confusion.sum() == len(y_test)
assert np.trace(confusion) == int(round(adam_accuracy * len(y_test)))
per_class = confusion.diagonal() / confusion.sum(axis=1)
print("accuracy per class", np.round(per_class, 3))
assert per_class.min() >= 0.85

# %% [markdown]
# ## The same network with SGD and momentum
#
# Adam adapts a step size for every weight; SGD with momentum uses one
# learning rate for all of them and needs a larger one. On this small
# problem both end up in the same place.

# %%
rng = np.random.default_rng(SEED)
sgd_model = mlp(64, [128, 64], 10, rng=rng)
sgd = SGD(sgd_model.parameters(), lr=0.1, momentum=0.9)
sgd_network = NeuralNetwork(sgd_model, CrossEntropyLoss(), sgd, CosineAnnealingLR(sgd, T_max=EPOCHS))
sgd_history = sgd_network.fit(X_train, y_train, epochs=EPOCHS, batch_size=32, rng=rng, progress=False)
sgd_accuracy = sgd_network.evaluate(X_test, y_test)["accuracy"]
print(f"SGD with momentum: test accuracy {sgd_accuracy:.4f}")
assert sgd_accuracy >= 0.95, sgd_accuracy

# %% [markdown]
# ## Reproducibility
#
# The same seed gives the same run bit for bit: two epochs from scratch,
# twice, give identical weights.

# %%
def two_epochs(seed):
    generator = np.random.default_rng(seed)
    net = mlp(64, [32], 10, rng=generator)
    opt = Adam(net.parameters(), lr=3e-3)
    NeuralNetwork(net, CrossEntropyLoss(), opt).fit(X_train, y_train, epochs=2, rng=generator, progress=False)
    return net.state_dict()


first, second = two_epochs(7), two_epochs(7)
for key in first:
    np.testing.assert_array_equal(first[key], second[key])
assert not np.array_equal(first["0.weight"], two_epochs(8)["0.weight"])

# %% [markdown]
# ## Pictures (optional)
#
# With matplotlib installed, the training curves and a few misclassified test
# images are saved to the folder named by `NN_FROM_SCRATCH_FIGURES`, or else
# to a new temporary directory.

# %%
from nn_from_scratch import viz

if viz.available():
    print("saved", viz.save_figure(viz.plot_history(history, validation_label="test", title="MLP 64-128-64-10 on the digits, Adam"), "mlp_digits_history.png"))
    wrong = np.flatnonzero(predicted != y_test)[:8]
    if wrong.size:
        figure = viz.plot_images(X_test[wrong], labels=y_test[wrong], predictions=predicted[wrong],
                                 title="test digits the MLP gets wrong")
        print("saved", viz.save_figure(figure, "mlp_digits_mistakes.png"))

print(f"mlp_digits: Adam {adam_accuracy:.4f}, SGD {sgd_accuracy:.4f}; all checks pass")
