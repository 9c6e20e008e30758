"""``train --task language`` (a character-level language model on the shipped word corpus) and ``sample``.

The model predicts each next character of the corpus (:func:`~nn_from_scratch.datasets.load_words`):
windows of ``--context`` characters in, the characters one step later out,
cross-entropy over every position.  ``--model transformer`` is a decoder-only
transformer: token embedding, learned positions, ``--layers``
:class:`~nn_from_scratch.nodes.TransformerDecoderBlock` of ``--embed``
features and ``--heads`` heads, a final LayerNorm and the linear head.
``--model lstm`` and ``--model gru`` are recurrent: token embedding,
``--layers`` stacked :class:`~nn_from_scratch.nodes.LSTM` or
:class:`~nn_from_scratch.nodes.GRU` layers (``batch_first``) of hidden size
``--embed``, and the linear head on their output sequence (no positions:
the recurrence knows the order).  They have no heads: ``--heads`` is refused
for them.  Each window is read from a zero state, so training is
backpropagation through ``--context`` steps and sampling runs the model
over the last ``--context`` characters, as for the transformer.  The run
reports the validation loss in nats per character (the mean cross-entropy
on the fixed validation split), saves the weights with the model's
architecture (``nn_from_scratch.load_model(path)`` rebuilds it), its
configuration and vocabulary, and prints a sample; ``sample --weights``
draws more text from the saved model.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, Mapping

import numpy as np

from .. import extras, viz
from ..containers import Sequential
from ..datasets import decode, encode, load_words, sequence_windows
from ..files import check_model_path, load_layout, load_model_state
from ..losses import CrossEntropyLoss
from ..nodes import (GRU, LSTM, Embedding, FirstOutput, LayerNorm, LearnedPositionalEmbedding, Linear, Permute,
                     TransformerDecoderBlock, TransformerEncoderLayer)
from ..random import as_generator
from ..registry import ARCHITECTURE_KEY, load_model
from ..training import NeuralNetwork
from .common import save_model
from .options import OPTIMIZERS

__all__ = ["KINDS", "LANGUAGE_DEFAULTS", "LANGUAGE_ONLY", "FirstOutput", "add_language_options", "add_sample_command",
           "attention_maps", "generate", "language_model",
           "sequence_tagger", "train_language", "validate_language_config"]

#: Defaults of ``train --task language``: about a minute on two cores, in float32.
LANGUAGE_DEFAULTS = {"model": "transformer", "epochs": 10, "batch_size": 32, "lr": 3e-3, "optimizer": "adam",
                     "seed": 0, "dtype": "float32", "context": 32, "embed": 64, "heads": 4, "layers": 2}
#: The options that only ``--task language`` reads (argparse dest, the option without its dashes).
LANGUAGE_ONLY = ("context", "embed", "heads", "layers")
RECURRENT = ("lstm", "gru")
#: The configuration's ``kind`` of each ``--model``.
KINDS = {"transformer": "transformer_lm", "lstm": "lstm_lm", "gru": "gru_lm"}
TASK_KEY = "language"
MAX_SIZE = 4096


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_language_options(train: argparse.ArgumentParser) -> None:
    """The options that only ``train --task language`` reads."""
    group = train.add_argument_group("character-level language model (--task language only)")
    group.add_argument("--context", type=_positive_int, default=None, help="characters per window (default 32)")
    group.add_argument("--embed", type=_positive_int, default=None,
                       help="features per character, also the LSTM's or GRU's hidden size (default 64)")
    group.add_argument("--heads", type=_positive_int, default=None,
                       help="attention heads (default 4; --model transformer only)")
    group.add_argument("--layers", type=_positive_int, default=None,
                       help="decoder blocks, or stacked LSTM or GRU layers (default 2)")


def add_sample_command(commands: Any) -> None:
    """``nn-from-scratch sample --weights W --length 200 --temperature 0.8 --seed 0``."""
    sample = commands.add_parser("sample", help="draw text from a language model that 'train --task language' saved")
    sample.add_argument("--weights", type=Path, required=True, help="the .npz or .safetensors that train saved")
    sample.add_argument("--length", type=_positive_int, default=200, help="characters to draw (default 200)")
    sample.add_argument("--temperature", type=float, default=0.8,
                        help="divides the logits before the softmax: below 1 surer, above 1 wilder (default 0.8)")
    sample.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    sample.add_argument("--prompt", default="\n", help="text to start from (default a newline)")
    sample.add_argument("--attention", type=Path, default=None, metavar="PNG",
                        help="also save the attention maps of every block and head on the last window drawn")
    sample.set_defaults(handler=sample_command, subparser=sample)


# ------------------------------------------------------------------ the model
def validate_language_config(config: Any) -> Dict[str, Any]:
    """A language model's configuration (untrusted: a file's metadata), checked field by field."""
    if not isinstance(config, Mapping) or config.get("kind") not in KINDS.values():
        raise ValueError(f"not a language model's configuration: {str(config):.80}")
    recurrent = config["kind"] != "transformer_lm"
    fields = ("vocabulary", "context", "embed", "layers", "dtype") if recurrent else (
        "vocabulary", "context", "embed", "heads", "layers", "dtype")
    if set(config) != {"kind", *fields}:
        raise ValueError(f"a language model's configuration has the fields {fields}, got {sorted(config)}")
    vocabulary = config["vocabulary"]
    if not isinstance(vocabulary, str) or not 2 <= len(vocabulary) <= MAX_SIZE or len(set(vocabulary)) != len(
            vocabulary):
        raise ValueError(f"its vocabulary must be a string of distinct characters, got {vocabulary!r:.80}")
    for field in fields[1:-1]:
        value = config[field]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
            raise ValueError(f"its {field!r} must be an integer in [1, {MAX_SIZE}], got {value!r:.40}")
    if not recurrent and config["embed"] % config["heads"]:
        raise ValueError(f"its embed ({config['embed']}) must be divisible by its heads ({config['heads']})")
    if config["dtype"] not in ("float32", "float64"):
        raise ValueError(f"its dtype must be float32 or float64, got {config['dtype']!r:.40}")
    return dict(config)


def language_model(config: Mapping[str, Any], rng: Any = None) -> Sequential:
    """The model a configuration describes: logits ``(N, vocabulary, T)`` for codes ``(N, T)``.

    ``kind`` ``transformer_lm`` is the decoder-only transformer; ``lstm_lm``
    and ``gru_lm`` are Embedding, the recurrent layers (hidden size
    ``embed``), :class:`FirstOutput` and the head.  The class axis comes
    second, where :class:`CrossEntropyLoss` reads it (as torch's
    ``cross_entropy`` over ``(N, C, T)``).
    """
    config = validate_language_config(config)
    generator, dtype = as_generator(rng), np.dtype(config["dtype"])
    size, embed = len(config["vocabulary"]), config["embed"]
    if config["kind"] != "transformer_lm":
        layer, outputs = (LSTM, 3) if config["kind"] == "lstm_lm" else (GRU, 2)
        return Sequential(Embedding(size, embed, rng=generator, dtype=dtype),
                          layer(embed, embed, config["layers"], batch_first=True, rng=generator, dtype=dtype),
                          FirstOutput(outputs), Linear(embed, size, rng=generator, dtype=dtype), Permute(0, 2, 1))
    layers = [Embedding(size, embed, rng=generator, dtype=dtype),
              LearnedPositionalEmbedding(config["context"], embed, rng=generator, dtype=dtype)]
    layers += [TransformerDecoderBlock(embed, config["heads"], 4 * embed, 0.0, rng=generator, dtype=dtype)
               for _ in range(config["layers"])]
    layers += [LayerNorm(embed, dtype=dtype), Linear(embed, size, rng=generator, dtype=dtype), Permute(0, 2, 1)]
    return Sequential(*layers)


def sequence_tagger(symbols: int, length: int, embed: int = 32, heads: int = 4, layers: int = 1, *, rng: Any = None,
                    dtype: Any = np.float32) -> Sequential:
    """A transformer that labels every position of a sequence, seeing all of it (the synthetic reversal task).

    Token embedding, learned positions, ``layers`` pre-norm
    :class:`TransformerEncoderLayer` (no mask), LayerNorm and the head:
    logits ``(N, symbols, T)`` for codes ``(N, T)``.
    """
    generator = as_generator(rng)
    body = [TransformerEncoderLayer(embed, heads, 2 * embed, 0.0, batch_first=True, norm_first=True, rng=generator,
                                    dtype=dtype) for _ in range(layers)]
    return Sequential(Embedding(symbols, embed, rng=generator, dtype=dtype),
                      LearnedPositionalEmbedding(length, embed, rng=generator, dtype=dtype), *body,
                      LayerNorm(embed, dtype=dtype), Linear(embed, symbols, rng=generator, dtype=dtype),
                      Permute(0, 2, 1))


def attention_maps(model: Sequential, codes: Any) -> np.ndarray:
    """The attention probabilities of every transformer layer of ``model`` on ``codes`` ``(T,)``: ``(layers, H, T, T)``.

    The model is run node by node in eval mode, each
    :class:`TransformerEncoderLayer` (the decoder blocks included) asked for
    its :meth:`~TransformerEncoderLayer.attention_weights` on its input.
    """
    x: Any = np.asarray(codes)[None, :]
    maps = []
    model.eval()
    for node in model:
        if isinstance(node, TransformerEncoderLayer):
            maps.append(np.asarray(node.attention_weights(x))[0])
        x = node.evaluate(x)
    return np.stack(maps)


def generate(model: Any, vocabulary: str, context: int, length: int, temperature: float, seed: int,
             prompt: str = "\n") -> str:
    """``length`` characters drawn one at a time from the model's softmax at ``temperature``, after ``prompt``."""
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"the temperature must be a positive number, got {temperature}")
    rng = np.random.default_rng(seed)
    codes = list(encode(prompt, vocabulary)) or [0]
    model.eval()
    for _ in range(length):
        window = np.array(codes[-context:])[None, :]
        logits = np.asarray(model.evaluate(window), dtype=np.float64)[0, :, -1] / temperature
        p = np.exp(logits - logits.max())
        codes.append(int(rng.choice(len(vocabulary), p=p / p.sum())))
    return decode(codes[len(codes) - length:], vocabulary)


# ------------------------------------------------------------------ train --task language
def _resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.model not in (None, *KINDS):
        parser.error(f"--model {args.model} is for --task classify; --task language trains --model transformer, "
                     "lstm or gru")
    if args.model in RECURRENT and args.heads is not None:
        parser.error(f"--heads is for --model transformer: the {args.model.upper()} has no attention heads")
    if args.dataset is not None:
        parser.error("--task language trains on the shipped word corpus; --dataset is for --task classify")
    for option in ("distributed", "resume", "hidden", "channels"):
        if getattr(args, option, None) not in (None, False):
            parser.error(f"--{option.replace('_', '-')} does not apply to --task language")
    for key, value in LANGUAGE_DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.model == "transformer" and args.embed % args.heads:
        parser.error(f"--embed {args.embed} must be divisible by --heads {args.heads}")
    args.out = args.out or Path("runs") / f"words-{args.model}.npz"
    try:
        check_model_path(args.out)
    except (ValueError, ImportError, OSError) as error:
        parser.error(f"--out: {error}")
    if args.out.exists() and not args.overwrite:
        parser.error(f"--out {args.out} exists: add --overwrite to replace it, or give another --out")


def train_language(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Train the language model, report the validation loss in nats per character, save it, print a sample."""
    _resolve(args, parser)
    corpus = load_words()
    X, Y = sequence_windows(corpus.train, args.context)
    X_valid, Y_valid = sequence_windows(corpus.validation, args.context)
    config = {"kind": KINDS[args.model], "vocabulary": corpus.vocabulary, "context": args.context,
              "embed": args.embed, "heads": args.heads, "layers": args.layers, "dtype": args.dtype}
    if args.model in RECURRENT:
        del config["heads"]
        described = (f"{'an' if args.model == 'lstm' else 'a'} {args.model.upper()} ({args.layers} layer"
                     f"{'' if args.layers == 1 else 's'}, embed and hidden {args.embed}, "
                     f"context {args.context})")
    else:
        described = (f"a decoder-only transformer ({args.layers} blocks, embed {args.embed}, {args.heads} heads, "
                     f"context {args.context})")
    rng = np.random.default_rng(args.seed)
    model = language_model(config, rng)
    network = NeuralNetwork(model, CrossEntropyLoss(), OPTIMIZERS[args.optimizer](model.parameters(), lr=args.lr))
    print(f"training {described} on {len(corpus.train)} characters of words ({len(corpus.validation)} "
          f"validate), {args.optimizer} lr={args.lr:g}, batch {args.batch_size}, {args.epochs} epochs, "
          f"seed {args.seed}, {args.dtype}")
    start = time.perf_counter()
    history = network.fit(X, Y, epochs=args.epochs, batch_size=args.batch_size, validation_data=(X_valid, Y_valid),
                          rng=rng, progress="epochs" if args.no_progress else True)
    seconds = time.perf_counter() - start
    validation = float(history["val_loss"][-1])
    print(f"validation loss {validation:.4f} nats per character ({validation / math.log(2):.3f} bits) after "
          f"{seconds:.1f} s")
    metadata = {"task": TASK_KEY, "model": config, "history": {k: [float(v) for v in vs] for k, vs in history.items()},
                "seed": args.seed, "optimizer": args.optimizer, "lr": args.lr, "batch_size": args.batch_size,
                "validation_nats_per_char": validation}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_model(args.out, model, metadata)
    print(f"weights saved to {args.out}")
    text = generate(model, corpus.vocabulary, args.context, 200, 0.8, args.seed)
    print("sample (temperature 0.8):\n" + text)
    return 0


# ------------------------------------------------------------------ sample
def load_language_model(path: Path) -> Any:
    """The model saved at ``path`` and its configuration; ``ValueError`` for a file that is not a language model.

    The model is rebuilt from the architecture saved with it (``load_model(path)``); a file of weights alone is
    read into the model its configuration describes.
    """
    layout, metadata = load_layout(path)
    if metadata.get("task") != TASK_KEY:
        raise ValueError("it is not a language model that 'train --task language' saved")
    config = validate_language_config(metadata.get("model"))
    if ARCHITECTURE_KEY in metadata:
        return load_model(path), config
    state, _ = load_model_state(path, max_bytes=sum(info.nbytes for info in layout.values()))
    model = language_model(config, rng=0)
    model.load_state_dict(state)
    return model, config


def sample_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``sample``: print ``--length`` characters drawn from the saved model."""
    try:
        model, config = load_language_model(args.weights)
        if args.attention is not None and config["kind"] != "transformer_lm":
            raise ValueError(f"--attention draws a transformer's attention maps; this model is recurrent "
                             f"({config['kind']}), without attention")
        text = generate(model, config["vocabulary"], config["context"], args.length, args.temperature, args.seed,
                        args.prompt)
    except (FileNotFoundError, ValueError, KeyError, TypeError, ImportError) as error:
        parser.error(f"cannot sample from {args.weights}: {error}")
    sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
    if args.attention is not None:
        if not viz.available():
            print(f"no attention maps saved: matplotlib is not installed; {extras.install_hint('matplotlib')}",
                  file=sys.stderr)
            return 1
        window = (args.prompt + text)[-config["context"]:]
        maps = attention_maps(model, encode(window, config["vocabulary"]))
        figure = viz.plot_attention(maps, list(window), title=f"attention of {args.weights.name} on its last "
                                                              f"{len(window)} characters")
        print(f"attention maps saved to {viz.save_figure(figure, args.attention.name, args.attention.parent)}",
              file=sys.stderr)
    return 0
