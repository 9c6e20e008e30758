"""Files: model files and checkpoints on disk, as untrusted input, written atomically, never pickled.

``atomic`` (atomic_write, stale temporaries, the writability probe, names
kept within the length a file system takes), ``npz``
and ``safetensors_format`` (the two formats, hardened readers and writers),
``state_tree`` (nested states as JSON plus arrays) and ``model_files``
(save_model, load_model_state, load_model, save_arrays, load_arrays,
load_layout, check_model_path: the format by suffix).
"""
from .arrays import DEFAULT_MAX_BYTES, MAX_METADATA_BYTES, ArrayInfo, name_list
from .atomic import NAME_MAX, STALE_TEMPORARY_SECONDS, atomic_write, check_writable, sibling_path
from .model_files import (
    MODEL_SUFFIXES, check_model_path, fit_problems, load_arrays, load_layout, load_model, load_model_state,
    save_arrays, save_model,
)
from .npz import load_npz, save_npz
from .safetensors_format import load_safetensors, safetensors_available, save_safetensors
from .state_tree import flatten_state, unflatten_state

__all__ = [
    "DEFAULT_MAX_BYTES", "MAX_METADATA_BYTES", "MODEL_SUFFIXES", "NAME_MAX", "STALE_TEMPORARY_SECONDS", "ArrayInfo",
    "atomic_write", "check_model_path", "check_writable", "fit_problems", "flatten_state", "load_arrays",
    "load_layout", "load_model", "load_model_state", "load_npz", "load_safetensors", "name_list",
    "safetensors_available", "save_arrays", "save_model", "save_npz", "save_safetensors", "sibling_path",
    "unflatten_state",
]
