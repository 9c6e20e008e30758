"""Model files that carry their architecture: ``load_model(path)`` rebuilds the model from the library alone.

:func:`save_model` writes the state dict as :func:`nn_from_scratch.files.save_model`
does (``.npz`` or ``.safetensors`` by the suffix) and adds the architecture
record (:mod:`.record`) to the JSON metadata, under
:data:`ARCHITECTURE_KEY`.  :func:`load_model` without a model reads the
file's directory and metadata first, checks the record against its bounds
and the file's declared data (:func:`~.record.check_record`), builds the
model and then loads the weights, refusing any array that does not fit
(:func:`nn_from_scratch.files.load_model`).  With a model it only loads the
weights, as before.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from ..files import model_files
from ..files.arrays import DEFAULT_MAX_BYTES, MAX_METADATA_BYTES, PathLike, _clip
from ..node import Node
from .record import build, describe

__all__ = ["ARCHITECTURE_KEY", "load_architecture", "load_model", "save_model"]

#: the metadata key of the architecture record
ARCHITECTURE_KEY = "nn_from_scratch.architecture"


def save_model(path: PathLike, model: Node, metadata: Optional[Mapping[str, Any]] = None) -> Any:
    """Save ``model``'s state dict with its architecture (and JSON ``metadata``), atomically; return the path.

    Every node of the model must be registered and describe itself
    (:meth:`~nn_from_scratch.node.Node.config`); otherwise ``ValueError``
    names the node, before anything is written (save the weights alone with
    :func:`nn_from_scratch.files.save_model`).
    """
    if not isinstance(model, Node):
        raise TypeError(f"save_model(path, model) takes a Node to describe, got {type(model).__name__} (a state dict "
                        "is saved by nn_from_scratch.files.save_model)")
    extra = dict(metadata or {})
    if ARCHITECTURE_KEY in extra:
        raise ValueError(f"save_model: the metadata key {ARCHITECTURE_KEY!r} is the architecture's own")
    extra[ARCHITECTURE_KEY] = describe(model)
    return model_files.save_model(path, model, extra)


def load_architecture(path: PathLike, *, max_metadata_bytes: int = MAX_METADATA_BYTES) -> Node:
    """The model a file's architecture record describes, built with new weights (checked first; see the module)."""
    layout, metadata = model_files.load_layout(path, max_metadata_bytes=max_metadata_bytes)
    if ARCHITECTURE_KEY not in metadata:
        raise ValueError(f"{path} holds weights without an architecture: build the model in code and give it, "
                         "load_model(path, model)")
    declared = sum(info.nbytes for info in layout.values())
    try:
        return build(metadata[ARCHITECTURE_KEY], max_elements=declared)
    except ValueError as error:
        raise ValueError(f"{path}: its architecture: {_clip(str(error), 1000)}") from None


def load_model(path: PathLike, model: Optional[Node] = None, *, max_bytes: Optional[int] = DEFAULT_MAX_BYTES,
               max_metadata_bytes: int = MAX_METADATA_BYTES) -> Any:
    """Without ``model``: the model saved in ``path``, rebuilt from its architecture and loaded with its weights.

    With ``model``: load the weights into it and return the metadata, as
    :func:`nn_from_scratch.files.load_model`.
    """
    if model is not None:
        return model_files.load_model(path, model, max_bytes=max_bytes, max_metadata_bytes=max_metadata_bytes)
    built = load_architecture(path, max_metadata_bytes=max_metadata_bytes)
    model_files.load_model(path, built, max_bytes=max_bytes, max_metadata_bytes=max_metadata_bytes)
    return built
