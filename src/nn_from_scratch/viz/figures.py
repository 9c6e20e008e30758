"""What every plot shares: matplotlib's Figure imported on first use, whether it is there, where figures are saved."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

from .. import extras

__all__ = ["available", "figure_class", "figures_directory", "save_figure"]


def figure_class(what: str) -> Any:
    """``matplotlib.figure.Figure``, imported on first use with a clear message when matplotlib is missing."""
    return extras.require("matplotlib.figure", what).Figure


def available() -> bool:
    """Whether matplotlib is installed, so that the plot functions can run."""
    return extras.available("matplotlib")


_figures: Optional[Path] = None


def figures_directory() -> Path:
    """Where :func:`save_figure` writes: ``$NN_FROM_SCRATCH_FIGURES`` (created if needed), else one new temporary folder per process."""
    global _figures
    named = os.environ.get("NN_FROM_SCRATCH_FIGURES")
    if named:
        path = Path(named)
        path.mkdir(parents=True, exist_ok=True)
        return path
    if _figures is None:
        _figures = Path(tempfile.mkdtemp(prefix="nn_from_scratch_figures_"))
    return _figures


def save_figure(figure: Any, name: str, directory: Union[None, str, Path] = None) -> Path:
    """Save ``figure`` as ``name`` in ``directory`` (default :func:`figures_directory`); return the path written.

    The format follows the name's suffix (``.png``, ``.svg``, ``.pdf``, ...);
    a name without one gets ``.png``, and the path returned has it (matplotlib
    alone would add the suffix to the file but not to the name given).  A
    suffix matplotlib cannot write is refused with ``ValueError`` before
    anything is written.
    """
    folder = Path(directory) if directory is not None else figures_directory()
    path = folder / name
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    kind = path.suffix[1:].lower()
    formats = figure.canvas.get_supported_filetypes()
    if kind not in formats:
        raise ValueError(f"save_figure: cannot write {path.name!r}: {path.suffix!r} is no image format matplotlib "
                         f"writes; use one of {', '.join('.' + k for k in sorted(formats))}")
    folder.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format=kind)
    return path
