"""``train --task classify`` (an MLP or a CNN on the digits or MNIST) and ``evaluate`` of a classifier."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..losses import CrossEntropyLoss
from ..training import NeuralNetwork
from .common import Task, TaskData, load_data

__all__ = ["Classify", "ClassifierEvaluation"]


class Classify(Task):
    """Classify images: the flat pixels for the MLP, NCHW images for the CNN; cross-entropy with label smoothing."""

    cross_entropy = True

    def load(self, args: argparse.Namespace, parser: argparse.ArgumentParser, dtype: np.dtype) -> TaskData:
        X_train, y_train, X_test, y_test = load_data(args.dataset, args.data_dir, parser, flatten=args.model == "mlp")
        X_train, X_test = X_train.astype(dtype, copy=False), X_test.astype(dtype, copy=False)
        classes = int(max(y_train.max(), y_test.max())) + 1
        return TaskData(X_train, y_train, X_test, y_test, y_test, classes,
                        CrossEntropyLoss(label_smoothing=args.label_smoothing),
                        f"{args.dataset}: {len(X_train)} train / {len(X_test)} test samples")

    def model_config(self, args: argparse.Namespace, data: TaskData) -> Dict[str, Any]:
        shape = tuple(int(d) for d in data.X_train.shape[1:])
        if args.model == "cnn":
            return {"kind": "cnn", "in_channels": shape[0], "image_size": shape[1], "channels": list(args.channels),
                    "hidden": args.hidden[0], "classes": data.classes, "dtype": args.dtype}
        return {"kind": "mlp", "in_features": shape[0], "hidden": list(args.hidden), "classes": data.classes,
                "dtype": args.dtype}

    def report(self, network: NeuralNetwork, data: TaskData, history: Dict[str, List[float]], seconds: float,
               args: argparse.Namespace) -> Dict[str, Any]:
        # the plain cross-entropy, as 'evaluate' prints it: the history's val_loss has the label smoothing in it
        plain = NeuralNetwork(network.model, CrossEntropyLoss(), optimizer=None)
        cross_entropy = plain.evaluate(data.X_test, data.y_test)["loss"]
        print(f"test accuracy {history['val_accuracy'][-1]:.4f}, test cross-entropy {cross_entropy:.4f} "
              f"after {seconds:.1f} s")
        return {}


class ClassifierEvaluation:
    """``evaluate`` of a classifier's weights on the test split of its dataset (or of --dataset)."""

    def __init__(self, metadata: Dict[str, Any], config: Dict[str, Any]) -> None:
        self.dataset: Optional[str] = metadata.get("dataset", "digits")
        self.flatten = config.get("kind") != "cnn"
        self.dtype = np.dtype(config["dtype"])

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser, model: Any, weights: Path) -> int:
        dataset = args.dataset or self.dataset
        _, _, X_test, y_test = load_data(dataset, args.data_dir, parser, flatten=self.flatten)
        network = NeuralNetwork(model, CrossEntropyLoss(), optimizer=None)
        try:
            result = network.evaluate(X_test.astype(self.dtype, copy=False), y_test)
        except ValueError as error:
            parser.error(f"the weights in {weights} do not fit the {dataset} data: {error}")
        print(f"{dataset} test accuracy {result['accuracy']:.4f}, test cross-entropy {result['loss']:.4f} "
              f"on {len(X_test)} samples")
        return 0
