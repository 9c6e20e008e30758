"""One-off script: extract the 8x8 digits into ``datasets/data/digits.npz``.

The 1797 8x8 handwritten digits are the test part of the UCI ML "Optical
Recognition of Handwritten Digits" dataset (E. Alpaydin, C. Kaynak, 1998) as
bundled with scikit-learn (``sklearn/datasets/data/digits.csv.gz``). This
script was run once to produce the small compressed ``.npz`` that ships with
``nn_from_scratch``; the library itself never imports scikit-learn.

Usage (scikit-learn needed only here)::

    python tools/extract_digits.py [OUTPUT_PATH]

The output holds two arrays, saved with ``np.savez_compressed``:

* ``images``: uint8, shape (1797, 8, 8), values 0..16 (pixel counts of the
  4x4 blocks of the original 32x32 bitmaps);
* ``labels``: uint8, shape (1797,), values 0..9.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

DEFAULT_OUTPUT = (
    Path(__file__).resolve().parent.parent
    / "src" / "nn_from_scratch" / "datasets" / "data" / "digits.npz"
)


def extract(output: Path) -> None:
    """Load scikit-learn's bundled digits, check them, and save them to ``output``."""
    from sklearn.datasets import load_digits  # only this script needs sklearn

    bunch = load_digits()
    images_float = np.asarray(bunch.images)
    labels_int = np.asarray(bunch.target)

    # The values are small non-negative integers stored as floats; make sure
    # the conversion to uint8 is exact before doing it.
    if images_float.shape != (1797, 8, 8):
        raise ValueError(f"expected images of shape (1797, 8, 8), got {images_float.shape}")
    if labels_int.shape != (1797,):
        raise ValueError(f"expected labels of shape (1797,), got {labels_int.shape}")
    if not np.array_equal(images_float, np.round(images_float)):
        raise ValueError("expected integer-valued pixels")
    if images_float.min() < 0 or images_float.max() > 16:
        raise ValueError(
            f"expected pixels in 0..16, got {images_float.min()}..{images_float.max()}"
        )
    if set(np.unique(labels_int).tolist()) != set(range(10)):
        raise ValueError(f"expected labels 0..9, got {np.unique(labels_int)}")

    images = images_float.astype(np.uint8)
    labels = labels_int.astype(np.uint8)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, images=images, labels=labels)

    # Read back and verify bit-for-bit.
    with np.load(output, allow_pickle=False) as data:
        np.testing.assert_array_equal(data["images"], images)
        np.testing.assert_array_equal(data["labels"], labels)
    print(f"wrote {output} ({output.stat().st_size} bytes): "
          f"images {images.shape} {images.dtype}, labels {labels.shape} {labels.dtype}")


if __name__ == "__main__":
    extract(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT)
