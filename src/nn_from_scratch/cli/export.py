"""``export``: a saved model as an ONNX file, checked by ``onnx.checker``: ``export --weights X.npz --onnx X.onnx``.

The model comes from the file: the model kind that ``train`` records (mlp,
cnn, resnet, localizer), checked as ``evaluate`` checks it, else its
architecture record (``nn_from_scratch.save_model``).  The
input's shape comes from the model kind, or from a Graph's Inputs, or from
``--input-shape``; the batch axis stays dynamic.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional, Tuple

from ..export import DEFAULT_OPSET, to_onnx
from ..files import load_layout
from ..models import build_model
from ..registry import ARCHITECTURE_KEY, load_model
from .evaluate import _read_weights

__all__ = ["add_export_options", "export"]


def add_export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, required=True,
                        help="a .npz or .safetensors written by 'train' or by save_model")
    parser.add_argument("--onnx", type=Path, required=True, help="the ONNX file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"the ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--input-shape", type=int, nargs="+", default=None, metavar="SIZE",
                        help="one sample's shape, without the batch axis (default: from the model)")


def _sample_shape(config: dict) -> Tuple[int, ...]:
    kind = config["kind"]
    if kind == "mlp":
        return (config["in_features"],)
    if kind == "resnet":
        return tuple(config["input_shape"])
    channels = config["in_channels"] if kind == "cnn" else 1
    return (channels, config["image_size"], config["image_size"])


def _model(path: Path) -> Tuple[Any, Optional[Tuple[int, ...]]]:
    _, metadata = load_layout(path)
    if ARCHITECTURE_KEY in metadata and "model" not in metadata:  # saved by save_model, not by train
        return load_model(path), None
    state, _, config = _read_weights(path)
    model = build_model(config, rng=0)
    model.load_state_dict(state)
    return model, _sample_shape(config)


def export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``export``: the exit status; a file or model that cannot be exported is a command-line error."""
    try:
        model, shape = _model(args.weights)
    except (FileNotFoundError, ValueError, KeyError, TypeError, ImportError) as error:
        parser.error(f"cannot load {args.weights}: {error}")
    model.eval()
    shape = tuple(args.input_shape) if args.input_shape is not None else shape
    try:
        path = to_onnx(model, args.onnx, shape, opset=args.opset)
    except (ValueError, TypeError, ImportError, OSError) as error:
        parser.error(f"cannot export {args.weights}: {error}")
    print(f"wrote {path} (opset {args.opset}, input shape {('N',) + tuple(shape) if shape else 'from the model'})")
    return 0
