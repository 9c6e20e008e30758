"""The synthetic task that shows attention earning its keep: reversing sequences of symbols.  The transformer gets
every symbol of the held-out sequences right; a model of the same embedding that reads each position alone stays
near chance.  (The recurrent side of the comparison runs in benchmarks/reverse.py once the LSTM exists.)"""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import NeuralNetwork, Sequential, optim
from nn_from_scratch.cli.language import sequence_tagger
from nn_from_scratch.datasets import reversal_task
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.nodes import Embedding, LearnedPositionalEmbedding, Linear, Permute, ReLU


def _held_out_accuracy(model, rng, epochs):
    X, Y = reversal_task(2000, 8, 10, rng)
    X_test, Y_test = reversal_task(1000, 8, 10, rng)
    network = NeuralNetwork(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=3e-3))
    network.fit(X, Y, epochs=epochs, batch_size=64, rng=rng, progress=False)
    return float(np.mean(network.predict(X_test) == Y_test))


def test_the_task():
    X, Y = reversal_task(5, 4, 3, rng=0)
    assert X.shape == Y.shape == (5, 4) and X.dtype == np.int64
    np.testing.assert_array_equal(Y, X[:, ::-1])
    with pytest.raises(ValueError):
        reversal_task(0)


def test_the_transformer_reverses_every_held_out_sequence():
    rng = np.random.default_rng(0)
    assert _held_out_accuracy(sequence_tagger(10, 8, rng=rng), rng, epochs=4) == 1.0


def test_without_attention_a_position_cannot_see_its_partner():
    rng = np.random.default_rng(0)
    model = Sequential(Embedding(10, 32, rng=rng, dtype=np.float32),
                       LearnedPositionalEmbedding(8, 32, rng=rng, dtype=np.float32), Linear(32, 32, rng=rng,
                                                                                            dtype=np.float32),
                       ReLU(), Linear(32, 10, rng=rng, dtype=np.float32), Permute(0, 2, 1))
    assert _held_out_accuracy(model, rng, epochs=4) < 0.2  # chance: 0.1
