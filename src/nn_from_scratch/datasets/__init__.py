"""Datasets and mini-batching.

* :func:`load_digits`: the 8x8 handwritten digits (1797 images, 10 classes)
  shipped with the package, as a seeded, stratified :class:`DatasetSplit`.
* :func:`load_mnist` and :func:`read_idx`: MNIST / Fashion-MNIST from IDX
  files (raw or gzip) that you download yourself; headers are validated
  before anything large is allocated.
* :func:`load_localization`: digits scaled and placed on a canvas, with
  their boxes, for single-object localisation.
* :class:`Dataset`, :class:`ArrayDataset`, :class:`IterableDataset`,
  :class:`GeneratorDataset`, :class:`DataLoader` and :func:`default_collate`:
  data of any shape (arrays, tuples and dicts of arrays, data read a piece
  at a time) in batches, shuffled with a seeded generator; what ``fit``,
  ``evaluate`` and ``predict`` take besides arrays.
* :func:`iterate_minibatches` and :func:`num_batches`: mini-batch iteration over arrays.
* :func:`read_mnist`: the same files as uint8 images, to convert per batch with
  a :class:`BatchPipeline` (augmentation: :class:`RandomCrop`,
  :class:`HorizontalFlip`, :class:`RandomErasing`; :class:`Normalize` with
  :func:`image_statistics`).
* :func:`find_image_dataset`, :func:`load_image_dataset`, :data:`CLASS_NAMES`
  and :func:`holdout`: where Fashion-MNIST and MNIST are, their files read
  and checked (28x28 images, labels 0 to 9), their class names, a validation split.
"""
from .augment import BatchPipeline, HorizontalFlip, Normalize, RandomCrop, RandomErasing, image_statistics
from .batching import iterate_minibatches, num_batches
from .loader import ArrayDataset, DataLoader, Dataset, GeneratorDataset, IterableDataset, default_collate
from .digits import DatasetSplit, load_digits
from .localization import LocalizationSplit, load_localization, place_digits
from .images import CLASS_NAMES, find_image_dataset, holdout, load_image_dataset
from .mnist import load_mnist, read_idx, read_mnist
# the character-level language corpus
from .text import TextSplit, decode, encode, load_words, sequence_windows
from .sequences import reversal_task

__all__ = [
    "ArrayDataset",
    "BatchPipeline",
    "DataLoader",
    "Dataset",
    "GeneratorDataset",
    "IterableDataset",
    "default_collate",
    "CLASS_NAMES",
    "DatasetSplit",
    "HorizontalFlip",
    "Normalize",
    "RandomCrop",
    "RandomErasing",
    "find_image_dataset",
    "holdout",
    "load_image_dataset",
    "image_statistics",
    "read_mnist",
    "LocalizationSplit",
    "iterate_minibatches",
    "load_digits",
    "load_localization",
    "load_mnist",
    "num_batches",
    "place_digits",
    "read_idx",
    # the character-level language corpus
    "TextSplit",
    "decode",
    "encode",
    "load_words",
    "reversal_task",
    "sequence_windows",
]
