"""``train --task classify`` (an MLP, a CNN or a ResNet on the digits, MNIST or Fashion-MNIST) and ``evaluate`` of a classifier.

The digits are small float arrays, used as they are.  MNIST and
Fashion-MNIST stay uint8 in memory: a :class:`~nn_from_scratch.datasets.BatchPipeline`
converts each batch when it is drawn, normalised by the mean and the
standard deviation of the training images (after the validation split is
taken out of them), and augments the training batches with ``--augment``.
The normalisation is saved with the weights, so ``evaluate`` makes its
batches the same way.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from .. import viz
from ..datasets import (CLASS_NAMES, BatchPipeline, HorizontalFlip, Normalize, RandomCrop, RandomErasing, holdout,
                        image_statistics)
from ..files import sibling_path
from ..losses import CrossEntropyLoss
from ..training import NeuralNetwork
from .common import Task, TaskData, describe_cross_entropy, load_data
from .options import IMAGE_VALIDATION

__all__ = ["Classify", "ClassifierEvaluation", "describe_augmentation", "make_pipeline"]

#: How many of the most confident mistakes the grid shows.
WORST_MISTAKES = 24


def augment_steps(augment: Optional[str]) -> List[str]:
    """The step names of a resolved --augment (``crop,erase``; None or ``none``: no step)."""
    return [] if augment in (None, "none") else augment.split(",")


def crop_padding(image_shape: Any) -> int:
    """How far the crop shifts: 2 pixels, 1 on images smaller than 16 pixels (the 8x8 digits)."""
    return 2 if min(image_shape[1:]) >= 16 else 1


def describe_augmentation(augment: Optional[str], image_shape: Any) -> str:
    """The augmentation of a run in words, as the first line of train says it."""
    steps = augment_steps(augment)
    if not steps:
        return "no augmentation"
    padding = crop_padding(image_shape)
    words = {"crop": f"crop (up to {padding} pixel{'' if padding == 1 else 's'})", "flip": "flip (p 0.5)",
             "erase": "erase (p 0.5)"}
    return "augmentation " + ", ".join(words[step] for step in steps)


def make_pipeline(dtype: Any, image_shape: Any, flatten: bool, normalization: Optional[Dict[str, float]],
                  augment: Optional[str], fill: float = 0.0) -> BatchPipeline:
    """The batch pipeline of a run: ``augment`` (``crop,flip,erase`` or a part; None or ``none``) and the normalisation.

    The crop shifts by up to 2 pixels (1 on images smaller than 16 pixels);
    erasing fills with ``fill``, the training images' mean pixel.
    """
    steps = augment_steps(augment)
    chosen = {"crop": RandomCrop(crop_padding(image_shape)), "flip": HorizontalFlip(0.5),
              "erase": RandomErasing(0.5, value=fill)}
    normalize = None if normalization is None else Normalize(normalization["mean"], normalization["std"])
    return BatchPipeline(dtype, [chosen[step] for step in steps], normalize, image_shape=image_shape,
                         flatten=flatten)


class Classify(Task):
    """Classify images: the flat pixels for the MLP, NCHW images for the CNN and the ResNet; cross-entropy with label smoothing."""

    cross_entropy = True
    validation_option = "--validation N"

    def load(self, args: argparse.Namespace, parser: argparse.ArgumentParser, dtype: np.dtype) -> TaskData:
        X_train, y_train, X_test, y_test = load_data(args.dataset, args.data_dir, parser, flatten=args.model == "mlp")
        if args.train_limit is not None:
            X_train, y_train = X_train[:args.train_limit], y_train[:args.train_limit]
        if args.test_limit is not None:
            X_test, y_test = X_test[:args.test_limit], y_test[:args.test_limit]
        images = X_train.dtype == np.uint8  # the IDX sets: converted per batch
        if args.validation is None:
            args.validation = min(len(X_train) // 12, IMAGE_VALIDATION) if images else 0
        total = len(X_train)
        validation = None
        if args.validation:
            if args.validation >= total:
                parser.error(f"--validation {args.validation} leaves no training image of the {total}")
            X_train, y_train, X_valid, y_valid = holdout(X_train, y_train, args.validation, rng=0)
            validation = (X_valid, y_valid)
        classes = int(max(y_train.max(), y_test.max())) + 1
        record: Dict[str, Any] = {"validation": int(args.validation), "augment": args.augment or "none"}
        normalization, fill = None, 0.0
        if images:
            mean, std = image_statistics(X_train)
            if not std > 0:  # normalisation divides by it
                parser.error(f"the {len(X_train)} training images of {args.dataset} in {args.data_dir} are constant "
                             f"(every pixel is {X_train.flat[0]}, standard deviation 0): there is nothing to learn "
                             "and nothing to normalise by")
            normalization, fill = {"mean": mean, "std": std}, round(mean * 255)
            record["normalization"] = normalization
        else:
            X_train, X_test = X_train.astype(dtype, copy=False), X_test.astype(dtype, copy=False)
            if validation is not None:
                validation = (validation[0].astype(dtype, copy=False), validation[1])
        transform = None
        side = math.isqrt(X_train[0].size)  # square images: the digits' 8x8, the IDX sets' 28x28 (checked)
        image_shape = (1, side, side)
        if images or augment_steps(args.augment):
            transform = make_pipeline(dtype, image_shape, args.model == "mlp", normalization, args.augment, fill)
        split = f" ({len(X_train)} training + {len(validation[0])} validation)" if validation is not None else ""
        return TaskData(X_train, y_train, X_test, y_test, y_test, classes,
                        CrossEntropyLoss(label_smoothing=args.label_smoothing),
                        f"{args.dataset}: {total} train / {len(X_test)} test samples{split}", transform=transform,
                        validation=validation, class_names=CLASS_NAMES.get(args.dataset, ()), record=record,
                        augmentation=describe_augmentation(args.augment, image_shape))

    def model_config(self, args: argparse.Namespace, data: TaskData) -> Dict[str, Any]:
        shape = tuple(int(d) for d in data.X_train.shape[1:])
        if args.model == "resnet":
            return {"kind": "resnet", "input_shape": list(shape), "channels": list(args.channels),
                    "blocks": [1] * len(args.channels), "classes": data.classes, "dtype": args.dtype}
        if args.model == "cnn":
            return {"kind": "cnn", "in_channels": shape[0], "image_size": shape[1], "channels": list(args.channels),
                    "hidden": args.hidden[0], "classes": data.classes, "dtype": args.dtype}
        return {"kind": "mlp", "in_features": shape[0], "hidden": list(args.hidden), "classes": data.classes,
                "dtype": args.dtype}

    def report(self, network: NeuralNetwork, data: TaskData, history: Dict[str, List[float]], seconds: float,
               args: argparse.Namespace) -> Dict[str, Any]:
        # the plain cross-entropy, as 'evaluate' prints it: the history's val_loss has the label smoothing in it
        plain = NeuralNetwork(network.model, CrossEntropyLoss(), optimizer=None)
        result = plain.evaluate(data.X_test, data.y_test, transform=data.transform)
        if data.validation is None:  # the test split was the validation data: the last epoch's score
            print(f"test accuracy {history['val_accuracy'][-1]:.4f}, test cross-entropy {result['loss']:.4f} "
                  f"after {seconds:.1f} s")
            return {}
        # the validation split chose the weights; the test split is scored once, now
        print(f"test accuracy {result['accuracy']:.4f}, test cross-entropy {result['loss']:.4f} on "
              f"{len(data.X_test)} test images after {seconds:.1f} s")
        return {"test_accuracy": result["accuracy"], "test_cross_entropy": result["loss"]}

    def loss_name(self, args: argparse.Namespace) -> str:
        return describe_cross_entropy(args.label_smoothing)

    def pictures(self, network: NeuralNetwork, data: TaskData, out: Path) -> None:
        """The confusion matrix on the test split and the grid of the most confident mistakes, next to the weights."""
        probabilities = network.predict_proba(data.X_test, transform=data.transform)
        predicted = probabilities.argmax(axis=1)
        names = list(data.class_names) or [str(c) for c in range(data.classes)]
        if len(names) < data.classes:
            names += [str(c) for c in range(len(names), data.classes)]
        title = f"{out.stem}: test split, {len(data.y_test)} images"
        matrix = viz.plot_confusion_matrix(data.y_test, predicted, names, title=title)
        saved = viz.save_figure(matrix, sibling_path(out, "-confusion.png").name, out.parent)
        print(f"confusion matrix saved to {saved}")
        images = data.X_test.reshape(len(data.X_test), -1)
        grid = viz.plot_worst_mistakes(images, data.y_test, probabilities, names, count=WORST_MISTAKES,
                                       title=f"{out.stem}: the most confident mistakes on the test split")
        if grid is None:
            print("no mistakes on the test split: no grid of mistakes saved")
            return
        saved = viz.save_figure(grid, sibling_path(out, "-mistakes.png").name, out.parent)
        print(f"worst mistakes saved to {saved}")


def _normalization(metadata: Dict[str, Any]) -> Optional[Dict[str, float]]:
    """The normalisation a weights file records (untrusted: checked), or None when it records none."""
    value = metadata.get("normalization")
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"mean", "std"}:
        raise ValueError(f"its 'normalization' must be {{'mean': ..., 'std': ...}}, got {value!r:.80}")
    mean, std = value["mean"], value["std"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (mean, std)) \
            or std <= 0:
        raise ValueError(f"its 'normalization' needs a finite mean and a std > 0, got {value!r:.80}")
    return {"mean": float(mean), "std": float(std)}


def _input_shape(config: Dict[str, Any]) -> Optional[tuple]:
    """The ``(C, H, W)`` of the images a classifier's config takes (an MLP's square inputs as ``(1, s, s)``)."""
    if config.get("kind") == "resnet":
        return tuple(int(d) for d in config["input_shape"])
    if config.get("kind") == "cnn":
        return (int(config["in_channels"]), int(config["image_size"]), int(config["image_size"]))
    side = math.isqrt(int(config.get("in_features", 0)))
    return (1, side, side) if side * side == config.get("in_features") else None


class ClassifierEvaluation:
    """``evaluate`` of a classifier's weights on the test split of its dataset (or of --dataset)."""

    def __init__(self, metadata: Dict[str, Any], config: Dict[str, Any]) -> None:
        self.dataset: Optional[str] = metadata.get("dataset", "digits")
        self.flatten = config.get("kind") == "mlp"
        self.dtype = np.dtype(config["dtype"])
        self.normalization = _normalization(metadata)
        self.image_shape = _input_shape(config)


    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser, model: Any, weights: Path) -> int:
        dataset = args.dataset or self.dataset
        _, _, X_test, y_test = load_data(dataset, args.data_dir, parser, flatten=self.flatten)
        if self.image_shape is not None and X_test[0].size != int(np.prod(self.image_shape)):
            side = math.isqrt(X_test[0].size)  # the test images are square (the digits, the checked IDX sets)
            parser.error(f"the weights in {weights} were trained on {'x'.join(map(str, self.image_shape))} images "
                         f"({self.dataset}); the {dataset} test images are 1x{side}x{side}: give the --dataset "
                         "(and --data-dir) they were trained on")
        network = NeuralNetwork(model, CrossEntropyLoss(), optimizer=None)
        transform = None
        if X_test.dtype == np.uint8:
            side = math.isqrt(X_test[0].size)
            if self.normalization is None:  # weights from before the normalisation was recorded: pixels / 255
                transform = BatchPipeline(self.dtype, normalize=Normalize(0.0, 1.0), image_shape=(1, side, side),
                                          flatten=self.flatten)
            else:
                transform = make_pipeline(self.dtype, (1, side, side), self.flatten, self.normalization, None)
        else:
            X_test = X_test.astype(self.dtype, copy=False)
        try:
            result = network.evaluate(X_test, y_test, transform=transform)
        except ValueError as error:
            parser.error(f"the weights in {weights} do not fit the {dataset} data: {error}")
        print(f"{dataset} test accuracy {result['accuracy']:.4f}, test cross-entropy {result['loss']:.4f} "
              f"on {len(X_test)} samples")
        return 0
