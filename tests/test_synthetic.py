"""The synthetic task that shows attention earning its keep: reversing sequences of symbols.  The transformer gets
every symbol of the held-out sequences right; a model of the same embedding that reads each position alone stays
near chance, and an LSTM of about the same size, reading left to right, gets only the second half (whose partners
it has seen).  benchmarks/reverse.py times the transformer and the LSTM."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import NeuralNetwork, Sequential, optim
from nn_from_scratch.cli.language import FirstOutput, sequence_tagger
from nn_from_scratch.datasets import reversal_task
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.nodes import LSTM, Embedding, LearnedPositionalEmbedding, Linear, Permute, ReLU


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


def test_an_lstm_of_the_same_size_gets_only_the_half_it_has_already_read():
    rng = np.random.default_rng(0)
    model = Sequential(Embedding(10, 32, rng=rng, dtype=np.float32), LSTM(32, 32, batch_first=True, rng=rng,
                                                                           dtype=np.float32),
                       FirstOutput(3), Linear(32, 10, rng=rng, dtype=np.float32), Permute(0, 2, 1))
    size = sum(p.value.size for p in model.parameters())
    assert size < sum(p.value.size for p in sequence_tagger(10, 8).parameters())  # 9098 against 9514
    X, Y = reversal_task(2000, 8, 10, rng)
    X_test, Y_test = reversal_task(1000, 8, 10, rng)
    network = NeuralNetwork(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=3e-3))
    network.fit(X, Y, epochs=20, batch_size=64, rng=rng, progress=False)
    right = network.predict(X_test) == Y_test
    # position t < 4 must output a symbol the LSTM reads only later: chance (0.1); t >= 4 outputs one it has read
    assert right[:, :4].mean() < 0.15 and right[:, 4:].mean() > 0.3 and right.mean() < 0.6
