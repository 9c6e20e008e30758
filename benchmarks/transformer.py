"""The decoder-only transformer in torch, as a twin of ``nn_from_scratch.cli.language.language_model``.

Used by ``benchmarks/run.py`` (the training-step row: 4 blocks, embed 128, 4
heads, context 64, batch 32) and, run as a script, to train the language
task's model in torch with the same data and hyperparameters as
``nn-from-scratch train --task language`` and compare the validation loss::

    python benchmarks/transformer.py [--epochs 10] [--ours]

``--ours`` trains ours too, in the same process (about a minute more), and
prints the ratio of the two validation losses (goal: within 2%).  The seeds
differ between the libraries (their generators draw differently); the
settings that do not depend on a seed are the same: the corpus, its windows,
the architecture, Adam at lr 3e-3, batch 32, the epochs, float32.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from nn_from_scratch.cli.language import LANGUAGE_DEFAULTS, language_model
from nn_from_scratch.datasets import load_words, sequence_windows


def torch_twin(torch, config, model=None):
    """The torch module of ``config`` (tokens ``(N, T)`` -> logits ``(N, V, T)``), with ``model``'s weights if given."""
    nn = torch.nn
    embed, size = config["embed"], len(config["vocabulary"])

    class LanguageModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens = nn.Embedding(size, embed)
            self.positions = nn.Embedding(config["context"], embed)
            self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(embed, config["heads"], 4 * embed, 0.0, "gelu",
                                                                   batch_first=True, norm_first=True)
                                        for _ in range(config["layers"]))
            self.norm = nn.LayerNorm(embed)
            self.head = nn.Linear(embed, size)

        def forward(self, codes):
            length = codes.shape[1]
            h = self.tokens(codes) + self.positions(torch.arange(length))
            mask = nn.Transformer.generate_square_subsequent_mask(length)
            for block in self.blocks:
                h = block(h, src_mask=mask, is_causal=True)
            return self.head(self.norm(h)).permute(0, 2, 1)

    twin = LanguageModel().to(getattr(torch, config["dtype"]))
    if model is not None:
        ours = list(model.state_dict().values())
        theirs = twin.state_dict()
        assert len(ours) == len(theirs), (len(ours), len(theirs))
        twin.load_state_dict({key: torch.from_numpy(value) for key, value in zip(theirs, ours)})
    return twin


def benchmark_config(vocabulary: int = 65, embed: int = 128, heads: int = 4, context: int = 64, layers: int = 4):
    return {"kind": "transformer_lm", "vocabulary": "".join(chr(33 + i) for i in range(vocabulary)),
            "context": context, "embed": embed, "heads": heads, "layers": layers, "dtype": "float32"}


def train_torch(torch, config, X, Y, X_valid, Y_valid, epochs, batch, lr, seed) -> float:
    """Train the torch twin as ``NeuralNetwork.fit`` trains ours; the validation loss of the last epoch (nats/char)."""
    torch.manual_seed(seed)
    model = torch_twin(torch, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    tx, ty = torch.from_numpy(X), torch.from_numpy(Y)
    for epoch in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(X)))
        for start in range(0, len(X), batch):
            index = order[start:start + batch]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(tx[index]), ty[index])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            valid = torch.nn.functional.cross_entropy(model(torch.from_numpy(X_valid)), torch.from_numpy(Y_valid))
        print(f"torch epoch {epoch + 1}/{epochs}: val_loss {valid.item():.4f}")
    return float(valid.item())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=LANGUAGE_DEFAULTS["epochs"])
    parser.add_argument("--ours", action="store_true", help="train ours too and print the ratio")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    d = LANGUAGE_DEFAULTS
    corpus = load_words()
    X, Y = sequence_windows(corpus.train, d["context"])
    X_valid, Y_valid = sequence_windows(corpus.validation, d["context"])
    config = {"kind": "transformer_lm", "vocabulary": corpus.vocabulary, "context": d["context"], "embed": d["embed"],
              "heads": d["heads"], "layers": d["layers"], "dtype": "float32"}
    start = time.perf_counter()
    theirs = train_torch(torch, config, X, Y, X_valid, Y_valid, args.epochs, d["batch_size"], d["lr"], d["seed"])
    print(f"torch: validation loss {theirs:.4f} nats per character after {time.perf_counter() - start:.1f} s")
    if args.ours:
        from nn_from_scratch import NeuralNetwork, optim
        from nn_from_scratch.losses import CrossEntropyLoss
        rng = np.random.default_rng(d["seed"])
        model = language_model(config, rng)
        network = NeuralNetwork(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=d["lr"]))
        start = time.perf_counter()
        history = network.fit(X, Y, epochs=args.epochs, batch_size=d["batch_size"],
                              validation_data=(X_valid, Y_valid), rng=rng, progress="epochs")
        ours = float(history["val_loss"][-1])
        print(f"ours: validation loss {ours:.4f} nats per character after {time.perf_counter() - start:.1f} s; "
              f"ours/torch {ours / theirs:.4f} (goal within 2%: {abs(ours / theirs - 1) <= 0.02})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
