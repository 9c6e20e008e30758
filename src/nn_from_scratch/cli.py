"""The command line: ``nn-from-scratch train`` and ``nn-from-scratch evaluate``."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import optim
from .datasets import load_digits, load_mnist
from .losses import CrossEntropyLoss
from .models import build_model
from .network import CheckpointError, NeuralNetwork, TrainingDiverged, TrainingInterrupted
from .serialization import check_model_path, load_model_state, save_model

__all__ = ["main", "build_parser"]

OPTIMIZERS = {"adam": optim.Adam, "adamw": optim.AdamW, "sgd": optim.SGD, "rmsprop": optim.RMSProp}
DEFAULT_HIDDEN = (128, 64)


def _positive(kind: type, what: str):
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a {kind.__name__}, got {text!r}") from None
        if not value > 0 or (kind is float and not np.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{what} must be positive, got {text!r}")
        return value

    return parse


def _hidden_sizes(text: str) -> Tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden takes sizes separated by commas, like 128,64; got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"--hidden sizes must be positive, got {text!r}")
    return sizes


def _add_data_options(parser: argparse.ArgumentParser, default: Optional[str]) -> None:
    parser.add_argument("--dataset", choices=("digits", "mnist"), default=default,
                        help="the embedded 8x8 digits, or MNIST/Fashion-MNIST IDX files from --data-dir")
    parser.add_argument("--data-dir", type=Path, help="folder with the IDX files (train-images-idx3-ubyte[.gz], ...)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nn-from-scratch", description="Train and evaluate networks built with nn_from_scratch.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a classifier and save its weights")
    _add_data_options(train, "digits")
    train.add_argument("--hidden", type=_hidden_sizes, default=DEFAULT_HIDDEN, help="hidden layer sizes (default 128,64)")
    train.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                       help="an MLP on flat pixels, or a CNN (two 3x3 conv + max-pool blocks) on images")
    train.add_argument("--epochs", type=_positive(int, "--epochs"), default=None,
                       help="passes over the training data (default 40 for the MLP, 20 for the CNN)")
    train.add_argument("--batch-size", type=_positive(int, "--batch-size"), default=32)
    train.add_argument("--lr", type=_positive(float, "--lr"), default=3e-3, help="learning rate (default 3e-3)")
    train.add_argument("--schedule", choices=("cosine", "constant"), default="cosine",
                       help="learning-rate schedule over the epochs (default cosine annealing to 0)")
    train.add_argument("--label-smoothing", type=float, default=0.1, help="cross-entropy label smoothing (default 0.1)")
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
    train.add_argument("--seed", type=int, default=0, help="seed for the weights and the batch order")
    train.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    train.add_argument("--out", type=Path, default=None,
                       help="where to save the weights, .npz or .safetensors (default runs/<dataset>-mlp.npz)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_checkpoint_options(train)
    train.set_defaults(handler=_train, subparser=train)

    evaluate = commands.add_parser("evaluate", help="reload saved weights and report test accuracy")
    evaluate.add_argument("--weights", type=Path, required=True, help="a .npz or .safetensors written by 'train'")
    _add_data_options(evaluate, None)
    evaluate.set_defaults(handler=_evaluate, subparser=evaluate)
    return parser


def load_data(dataset: str, data_dir: Optional[Path], parser: argparse.ArgumentParser,
              flatten: bool = True) -> Tuple[np.ndarray, ...]:
    """Train and test arrays for a dataset name (images as NCHW when not ``flatten``), errors as command-line errors."""
    if dataset == "digits":
        return tuple(load_digits(flatten=flatten))
    if data_dir is None:
        parser.error("--dataset mnist needs --data-dir, the folder with the IDX files")
    try:
        X_train, y_train = load_mnist(data_dir, "train", flatten=flatten)
        X_test, y_test = load_mnist(data_dir, "test", flatten=flatten)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    return X_train, y_train, X_test, y_test


def _add_checkpoint_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("checkpoints")
    group.add_argument("--checkpoint", type=Path, default=None,
                       help="save the whole training state here (.npz or .safetensors) every --checkpoint-every "
                            "epochs and on Ctrl-C; without it, Ctrl-C saves to <out>-checkpoint.<suffix> next to --out")
    group.add_argument("--checkpoint-every", type=_positive(int, "--checkpoint-every"), default=1, metavar="N",
                       help="epochs between checkpoints (default 1)")
    group.add_argument("--resume", type=Path, default=None, metavar="PATH",
                       help="continue from a checkpoint, with the options of the run that wrote it; "
                            "the result is bit for bit that of an uninterrupted run")


def default_checkpoint(out: Path) -> Path:
    """Where Ctrl-C saves the training state when --checkpoint is not given: next to the weights."""
    return out.with_name(f"{out.stem}-checkpoint{out.suffix}")


def resume_command(argv: Sequence[str], checkpoint: Path) -> str:
    """The command line that resumes ``argv`` from ``checkpoint`` (any --resume in it replaced)."""
    kept: List[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not arg.startswith("--resume="):
            kept.append(arg)
    return "nn-from-scratch " + " ".join(shlex.quote(a) for a in [*kept, "--resume", str(checkpoint)])


def _model_config(args: argparse.Namespace, in_features: int, classes: int) -> Dict[str, Any]:
    """The JSON-able description of the model to build (saved with the weights so 'evaluate' can rebuild it)."""
    if args.model == "cnn":
        return {"kind": "cnn", "in_channels": in_features[0], "image_size": in_features[1], "channels": [16, 32],
                "hidden": args.hidden[0], "classes": classes, "dtype": args.dtype}
    return {"kind": "mlp", "in_features": in_features[0], "hidden": list(args.hidden), "classes": classes,
            "dtype": args.dtype}


def _describe_model(config: Dict[str, Any]) -> str:
    if config["kind"] == "cnn":
        return (f"a CNN (conv {config['channels']} channels, dense {config['hidden']}) on "
                f"{config['in_channels']}x{config['image_size']}x{config['image_size']} images")
    layers = " -> ".join(str(n) for n in [config["in_features"], *config["hidden"], config["classes"]])
    return f"an MLP {layers}"


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.seed < 0:
        parser.error(f"--seed must be non-negative, got {args.seed}")
    if not 0.0 <= args.label_smoothing <= 1.0:
        parser.error(f"--label-smoothing must lie in [0, 1], got {args.label_smoothing}")
    if args.epochs is None:
        args.epochs = 20 if args.model == "cnn" else 40
    X_train, y_train, X_test, y_test = load_data(args.dataset, args.data_dir, parser, flatten=args.model == "mlp")
    dtype = np.dtype(args.dtype)
    X_train, X_test = X_train.astype(dtype, copy=False), X_test.astype(dtype, copy=False)
    classes = int(max(y_train.max(), y_test.max())) + 1
    config = _model_config(args, tuple(int(d) for d in X_train.shape[1:]), classes)
    out = args.out or Path("runs") / f"{args.dataset}-{config['kind']}.npz"
    checkpoint = args.checkpoint or default_checkpoint(out)
    for path, option in ((out, "--out"), (checkpoint, "--checkpoint")):
        try:
            check_model_path(path)
        except (ValueError, ImportError) as error:
            parser.error(f"{option}: {error}")
    if args.resume is not None and not args.resume.is_file():
        parser.error(f"--resume: no checkpoint at {args.resume}")
    rng = np.random.default_rng(args.seed)
    model = build_model(config, rng=rng)
    optimizer = OPTIMIZERS[args.optimizer](model.parameters(), lr=args.lr)
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=args.epochs) if args.schedule == "cosine" else None
    network = NeuralNetwork(model, CrossEntropyLoss(label_smoothing=args.label_smoothing), optimizer, scheduler)
    print(f"training {_describe_model(config)} on {args.dataset}: {len(X_train)} train / {len(X_test)} test samples, "
          f"{args.optimizer} lr={args.lr:g} ({args.schedule}), batch {args.batch_size}, {args.epochs} epochs, seed {args.seed}")
    if args.resume is not None:
        print(f"resuming from {args.resume}")
    start = time.perf_counter()
    try:
        history = network.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                              validation_data=(X_test, y_test), rng=rng, progress=not args.no_progress,
                              checkpoint=checkpoint, checkpoint_every=args.checkpoint_every if args.checkpoint else None,
                              resume=args.resume)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except CheckpointError as error:
        parser.error(f"--resume: {error}")
    except TrainingInterrupted as interrupt:
        print(f"\ninterrupted during epoch {interrupt.interrupted_epoch}: the training state after epoch "
              f"{interrupt.epoch} is saved in {interrupt.checkpoint}", file=sys.stderr)
        print(f"resume with: {resume_command(getattr(args, 'argv', []), interrupt.checkpoint)}", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - start
    if not history:
        parser.error(f"--resume: {args.resume} has no finished epoch and --epochs leaves nothing to train")
    accuracy = history["val_accuracy"][-1]
    print(f"test accuracy {accuracy:.4f} (loss {history['val_loss'][-1]:.4f}) after {seconds:.1f} s")
    if args.checkpoint is not None:
        print(f"checkpoint saved to {args.checkpoint}")
    metadata = {"model": config, "dataset": args.dataset, "history": history, "seed": args.seed,
                "optimizer": args.optimizer, "lr": args.lr, "batch_size": args.batch_size}
    save_model(out, model, metadata)
    print(f"weights saved to {out}")
    curves = save_training_curves(history, out.with_suffix(".png"))
    if curves is not None:
        print(f"training curves saved to {curves}")
    return 0


def save_training_curves(history: Dict[str, List[float]], path: Path) -> Optional[Path]:
    """Plot loss and accuracy per epoch to a PNG when matplotlib is installed; otherwise do nothing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for key, axis in (("loss", left), ("accuracy", right)):
        for prefix, label in (("", "train"), ("val_", "test")):
            if prefix + key in history:
                axis.plot(epochs, history[prefix + key], label=label)
        axis.set_xlabel("epoch")
        axis.set_title(key)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        state, metadata = load_model_state(args.weights)
        model = build_model(metadata["model"], rng=0)
        model.load_state_dict(state)
    except (FileNotFoundError, ValueError, KeyError, TypeError, ImportError) as error:
        parser.error(f"cannot load {args.weights}: {error}")
    dataset = args.dataset or metadata.get("dataset", "digits")
    _, _, X_test, y_test = load_data(dataset, args.data_dir, parser, flatten=metadata["model"].get("kind") != "cnn")
    dtype = np.dtype(metadata["model"].get("dtype", "float64"))
    network = NeuralNetwork(model, CrossEntropyLoss(), optimizer=None)
    try:
        result = network.evaluate(X_test.astype(dtype, copy=False), y_test)
    except ValueError as error:
        parser.error(f"the weights in {args.weights} do not fit the {dataset} data: {error}")
    print(f"{dataset} test accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f}) on {len(X_test)} samples")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return args.handler(args, args.subparser)
    except KeyboardInterrupt:  # outside training (loading data, saving): nothing to keep
        print("\ninterrupted", file=sys.stderr)
        return 130
