"""Scoring and predicting run in bounded batches, so their memory does not grow with the data set."""
import numpy as np

from nn_from_scratch import NeuralNetwork
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.models import cnn
from nn_from_scratch.optim import SGD
from nn_from_scratch.training.trainer import EVALUATION_BATCH

from file_helpers import peak_while


def _network() -> NeuralNetwork:
    model = cnn(1, 14, 10, channels=(8,), hidden=16, rng=0, dtype=np.float32)
    return NeuralNetwork(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1))


def test_scoring_four_batches_of_images_takes_no_more_memory_than_one():
    network = _network()
    rng = np.random.default_rng(0)
    one = rng.random((EVALUATION_BATCH, 1, 14, 14), dtype=np.float32)
    four = rng.random((4 * EVALUATION_BATCH, 1, 14, 14), dtype=np.float32)
    labels = rng.integers(0, 10, 4 * EVALUATION_BATCH)
    network.evaluate(one, labels[:EVALUATION_BATCH])  # first calls fill the layers' scratch pools
    single = peak_while(lambda: network.evaluate(one, labels[:EVALUATION_BATCH]))
    whole = peak_while(lambda: network.evaluate(four, labels))
    # The inputs are allocated outside the traced calls; a pass over the four batches at once would need
    # about four times the memory of one.
    assert whole < 1.5 * single, (whole, single)


def test_scores_do_not_depend_on_the_evaluation_batch():
    network = _network()
    rng = np.random.default_rng(1)
    X = rng.random((3 * EVALUATION_BATCH + 7, 1, 14, 14), dtype=np.float32)
    y = rng.integers(0, 10, len(X))
    default, whole = network.evaluate(X, y), network.evaluate(X, y, batch_size=len(X))
    assert default.keys() == whole.keys()
    np.testing.assert_allclose(default["accuracy"], whole["accuracy"], rtol=0, atol=0)
    np.testing.assert_allclose(default["loss"], whole["loss"], rtol=1e-6)
    np.testing.assert_array_equal(network.predict(X), network.predict(X, batch_size=len(X)))
