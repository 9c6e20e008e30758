"""Old import path of model files: the code now lives in :mod:`nn_from_scratch.files`.

:mod:`~nn_from_scratch.files.atomic` (atomic writes), :mod:`~nn_from_scratch.files.npz` and
:mod:`~nn_from_scratch.files.safetensors_format` (the formats), :mod:`~nn_from_scratch.files.state_tree`
(flatten_state/unflatten_state) and :mod:`~nn_from_scratch.files.model_files` (save_model, load_model, ...).
"""
from .files import *  # noqa: F401,F403
from .files import __all__ as _files_all
from .files.arrays import METADATA_KEY  # noqa: F401
from .files.safetensors_format import SAFETENSORS_DIGEST_KEY, SAFETENSORS_JSON_KEY  # noqa: F401

__all__ = list(_files_all)
