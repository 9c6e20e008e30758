"""The synthetic reversal task: the transformer against an LSTM of the same size (held-out accuracy and time).

Usage::

    python benchmarks/reverse.py [--epochs 5]

The transformer (one pre-norm encoder layer, embed 32, 4 heads) learns to
reverse sequences of 8 symbols out of 10 and is scored on 1000 held-out
sequences.  The LSTM side (embed 32, hidden 32, then the same head) runs
when ``nn_from_scratch.nodes`` has an ``LSTM``; until the recurrent layers
are merged it says so and stops after the transformer.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from nn_from_scratch import NeuralNetwork, Sequential, nodes, optim
from nn_from_scratch.cli.language import sequence_tagger
from nn_from_scratch.datasets import reversal_task
from nn_from_scratch.losses import CrossEntropyLoss


def score(name: str, model, epochs: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    X, Y = reversal_task(4000, 8, 10, rng)
    X_test, Y_test = reversal_task(1000, 8, 10, rng)
    network = NeuralNetwork(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=3e-3))
    start = time.perf_counter()
    network.fit(X, Y, epochs=epochs, batch_size=64, rng=rng, progress=False)
    accuracy = float(np.mean(network.predict(X_test) == Y_test))
    parameters = sum(p.value.size for p in model.parameters())
    print(f"{name:<12} {parameters:>7} parameters: held-out accuracy {accuracy:.4f} after "
          f"{time.perf_counter() - start:.1f} s")
    return accuracy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    score("transformer", sequence_tagger(10, 8, rng=args.seed), args.epochs, args.seed)
    if not hasattr(nodes, "LSTM"):
        print("LSTM: nn_from_scratch.nodes has no LSTM yet (the recurrent layers are not merged): not run")
        return 0
    rng = np.random.default_rng(args.seed)
    # written before the recurrent layers were merged: torch's LSTM arguments; adjust to their interface then
    lstm = Sequential(nodes.Embedding(10, 32, rng=rng, dtype=np.float32),
                      nodes.LSTM(32, 32, batch_first=True, rng=rng, dtype=np.float32),
                      nodes.Linear(32, 10, rng=rng, dtype=np.float32), nodes.Permute(0, 2, 1))
    score("LSTM", lstm, args.epochs, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
