r"""``train --task localize`` and ``evaluate`` of a localizer: the class and the box of a digit on a canvas.

It trains :func:`~nn_from_scratch.models.localizer` (one convolutional
trunk, a class head and a box head) on
:func:`~nn_from_scratch.datasets.load_localization` canvases with
:class:`~nn_from_scratch.losses.LocalizationLoss`

.. math::
    L = \mathrm{CE}(\hat z, t) + \lambda_b\, B(\hat b, b),

where ``--box-weight`` is :math:`\lambda_b` and ``--box-loss`` picks
:math:`B` (smooth L1 or MSE), and reports the held-out class accuracy and
the mean intersection over union of the boxes.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from .. import viz
from ..datasets import load_localization
from ..datasets.localization import validate_localization_settings
from ..files import sibling_path
from ..losses import LocalizationLoss
from ..metrics import mean_iou
from ..training import NeuralNetwork
from .common import Task, TaskData, describe_cross_entropy

__all__ = ["Localize", "LocalizerEvaluation", "localization_data_config"]

LOCALIZATION_DATA_SEED = 0
DIGIT_CLASSES = 10
#: Test canvases shown with their predicted boxes in the predictions picture.
PREDICTION_GRID = 16


def localization_data_config(canvas: int, train_samples: int, test_samples: int) -> Dict[str, Any]:
    """The keyword arguments of :func:`load_localization` for a canvas size: digits of 3/8 to 3/4 of the side.

    For the 32-pixel canvas these are the generator's own 12 to 24 pixels.
    """
    min_size = max(1, round(canvas * 12 / 32))
    max_size = max(min_size, round(canvas * 24 / 32))
    return {"n_train": int(train_samples), "n_test": int(test_samples), "canvas": int(canvas),
            "min_size": int(min_size), "max_size": int(max_size), "seed": LOCALIZATION_DATA_SEED}


def describe_loss(box_weight: float, box_loss: str, label_smoothing: float) -> str:
    """How the localizer's loss is made, as printed next to it by 'train' and 'evaluate'."""
    return f"{describe_cross_entropy(label_smoothing)} + {box_weight:g} x {box_loss}"


class Localize(Task):
    """Localize digits on canvases; the loss is cross-entropy plus ``--box-weight`` times the box loss."""

    cross_entropy = False  # the training loss has a box term: its size says nothing about the class guesses

    def load(self, args: argparse.Namespace, parser: argparse.ArgumentParser, dtype: np.dtype) -> TaskData:
        self.data_config = localization_data_config(args.canvas, args.train_samples, args.test_samples)
        self.canvases = load_localization(**self.data_config, dtype=dtype)
        c = self.canvases
        classes = DIGIT_CLASSES  # not max(label) + 1: a few canvases need not show every digit
        loss = LocalizationLoss(classes, box_weight=args.box_weight, box_loss=args.box_loss,
                                label_smoothing=args.label_smoothing)
        what = (f"{args.dataset} placed on {args.canvas}x{args.canvas} canvases: {len(c.X_train)} train / "
                f"{len(c.X_test)} test canvases, loss cross-entropy + {args.box_weight:g} x {args.box_loss}")
        return TaskData(c.X_train, c.targets_train, c.X_test, c.targets_test, c.labels_test, classes, loss, what)

    def model_config(self, args: argparse.Namespace, data: TaskData) -> Dict[str, Any]:
        return {"kind": "localizer", "image_size": int(data.X_train.shape[2]), "channels": list(args.channels),
                "hidden": args.hidden[0], "classes": data.classes, "dtype": args.dtype}

    def report(self, network: NeuralNetwork, data: TaskData, history: Dict[str, List[float]], seconds: float,
               args: argparse.Namespace) -> Dict[str, Any]:
        self.outputs = network.predict_output(data.X_test)
        _, boxes = data.loss.split(self.outputs)
        iou = mean_iou(boxes, self.canvases.boxes_test)
        accuracy = history["val_accuracy"][-1]
        print(f"test accuracy {accuracy:.4f}, mean IoU {iou:.4f} (loss {history['val_loss'][-1]:.4f}: "
              f"{describe_loss(args.box_weight, args.box_loss, args.label_smoothing)}) after {seconds:.1f} s")
        return {"data": self.data_config, "test_accuracy": accuracy, "test_mean_iou": iou,
                "loss": {"box_weight": args.box_weight, "box_loss": args.box_loss,
                         "label_smoothing": args.label_smoothing}}

    def loss_name(self, args: argparse.Namespace) -> str:
        return describe_loss(args.box_weight, args.box_loss, args.label_smoothing)

    def pictures(self, network: NeuralNetwork, data: TaskData, out: Path) -> None:
        shown = slice(0, min(PREDICTION_GRID, len(data.X_test)))
        logits, boxes = data.loss.split(self.outputs[shown])
        c = self.canvases
        figure = viz.plot_images(data.X_test[shown], labels=c.labels_test[shown], predictions=logits.argmax(axis=1),
                                 boxes=c.boxes_test[shown], pred_boxes=boxes, ncols=8,
                                 title=f"the first {len(logits)} test canvases")
        pictures = viz.save_figure(figure, sibling_path(out, "-predictions.png").name, out.parent)
        print(f"predictions (true boxes green, predicted red) saved to {pictures}")


class LocalizerEvaluation:
    """``evaluate`` of a localizer's weights: its test canvases rebuilt from the settings saved with them."""

    def __init__(self, metadata: Dict[str, Any], config: Dict[str, Any]) -> None:
        """Check the canvas and loss settings a weights file records (it is untrusted); ``ValueError`` if bad."""
        data_config: Dict[str, Any] = validate_localization_settings(metadata.get("data"))
        if data_config["canvas"] != config["image_size"]:
            raise ValueError(f"its canvas setting 'canvas' {data_config['canvas']} differs from the model's "
                             f"'image_size' {config['image_size']}")
        data_config["render_train"] = False  # the test canvases alone, drawn as if after the training ones
        settings = metadata.get("loss", {})
        if not isinstance(settings, dict):
            raise ValueError(f"its 'loss' settings must be a dict, got {type(settings).__name__}")
        for key in ("box_weight", "label_smoothing"):
            value = settings.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"its loss setting {key!r} must be a number, got {type(value).__name__}")
        if not isinstance(settings.get("box_loss", "smooth_l1"), str):
            raise ValueError("its loss setting 'box_loss' must be a string")
        self.loss = LocalizationLoss(config["classes"], box_weight=float(settings.get("box_weight", 1.0)),
                                     box_loss=settings.get("box_loss", "smooth_l1"),
                                     label_smoothing=float(settings.get("label_smoothing", 0.0)))
        self.data_config, self.dtype = data_config, np.dtype(config["dtype"])

    def run(self, args: argparse.Namespace, parser: argparse.ArgumentParser, model: Any, weights: Path) -> int:
        if args.dataset not in (None, "digits"):
            parser.error(f"{weights} is a localizer trained on digit canvases; --dataset {args.dataset} "
                         "does not apply")
        # the test canvases are drawn after the training ones from one generator: rebuild both, in order
        try:
            data = load_localization(**self.data_config, dtype=self.dtype)
        except ValueError as error:
            parser.error(f"cannot rebuild the canvases {weights} was trained on: {error}")
        network, loss = NeuralNetwork(model, self.loss, optimizer=None), self.loss
        try:
            result = network.evaluate(data.X_test, data.targets_test)
        except ValueError as error:
            parser.error(f"the weights in {weights} do not fit its canvases: {error}")
        _, boxes = loss.split(network.predict_output(data.X_test))
        print(f"digits localisation test accuracy {result['accuracy']:.4f}, mean IoU "
              f"{mean_iou(boxes, data.boxes_test):.4f} (loss {result['loss']:.4f}: "
              f"{describe_loss(loss.box_weight, loss.box_loss, loss.classification.label_smoothing)}) "
              f"on {len(data.X_test)} canvases")
        return 0
