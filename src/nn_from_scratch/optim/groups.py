r"""Parameter groups, as ``torch.optim`` keeps them: each a dict of ``params`` and the hyper-parameters they step with.

An optimizer's ``param_groups`` is a list of :class:`ParamGroup`, a dict
that checks a hyper-parameter when it is set (a scheduler's
``group["lr"] = ...``), so a bad value is refused and the group is left as
it was.  :func:`pack_groups` and :func:`unpack_groups` write the groups into
a state dict in torch's layout (``"param_groups"``: per group its
hyper-parameters and ``"params"``, the indices of its parameters) and read
them back, checked, for :meth:`~nn_from_scratch.optim.Optimizer.load_state_dict`
(with :func:`check_parameter_lists`, the shapes and dtypes it records).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from ..backend import numpy_dtype
from ..parameter import Parameter
from .arguments import as_scalar, check_count, check_group_entry

__all__ = ["ParamGroup", "check_parameter_lists", "pack_groups", "unpack_groups"]


class ParamGroup(dict):
    """One parameter group: ``"params"`` (its Parameters) and its hyper-parameters, checked whenever one is set.

    ``group[name] = value`` for a hyper-parameter checks the group's
    hyper-parameters with the new value (``ValueError``/``TypeError``
    naming it, the group unchanged); any other key is free as in torch
    (a scheduler's ``initial_lr``) as long as a checkpoint can hold it
    (:func:`~nn_from_scratch.optim.arguments.check_group_entry`).  The
    parameters of a group are fixed when it is added
    (:meth:`~nn_from_scratch.optim.Optimizer.add_param_group`).
    """

    def __init__(self, entries: Mapping[str, Any], kind: Any = None, names: Tuple[str, ...] = ()) -> None:
        super().__init__(entries)
        self._kind, self._names = kind, tuple(names)  # the optimizer class (its checks) and its hyper-parameters

    def checked(self, key: str, value: Any) -> Any:
        """``value`` as this group would hold it under ``key`` (refused with an error), without storing it."""
        if key == "params":
            raise TypeError("a parameter group's params are fixed when it is added; add_param_group adds more")
        if key in self._names and self._kind is not None:
            hyper = {name: self[name] for name in self._names}
            hyper[key] = value
            return self._kind._check_hyperparameters(hyper)[key]
        return check_group_entry(key, value)

    def hyperparameters(self) -> Dict[str, Any]:
        """The group's hyper-parameters (no ``params``, no other entries)."""
        return {name: self[name] for name in self._names}

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, self.checked(key, value))

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __reduce__(self) -> Tuple[type, Tuple[Dict[str, Any], Any, Tuple[str, ...]]]:
        return type(self), (dict(self), self._kind, self._names)


def pack_groups(groups: Sequence[ParamGroup]) -> List[Dict[str, Any]]:
    """The groups in torch's state-dict layout: each group's entries but ``params``, then ``params`` as indices.

    A parameter's index is its place in the flat list of every group's
    parameters in order (the keys of the state dict's ``"state"``).
    """
    packed, start = [], 0
    for group in groups:
        entries = {key: value for key, value in group.items() if key != "params"}
        entries["params"] = list(range(start, start + len(group["params"])))
        start += len(group["params"])
        packed.append(entries)
    return packed


def unpack_groups(saved: Any, groups: Sequence[ParamGroup], kind: Any, names: Tuple[str, ...],
                  later: Mapping[str, Any]) -> Tuple[List[Dict[str, Any]], Dict[int, int]]:
    """Check the state dict's ``"param_groups"`` against the optimizer's ``groups``: the new entries, and the indices.

    Returns, per group, its new entries (``params`` kept; the saved
    hyper-parameters checked by ``kind``, with ``later`` filling those an
    older state dict lacks; the other entries checked), and the map from
    each saved parameter index to the optimizer's flat index (torch maps
    them by order, group by group).  Nothing is changed; anything that does
    not fit raises ``ValueError`` or ``TypeError``.
    """
    if not isinstance(saved, (list, tuple)):
        raise TypeError(f"state_dict['param_groups'] must be a list of groups, got {type(saved).__name__}")
    if len(saved) != len(groups):
        raise ValueError(f"state_dict has {len(saved)} parameter groups, this optimizer has {len(groups)}")
    new_entries, index_map, start = [], {}, 0
    for g, (entries, group) in enumerate(zip(saved, groups)):
        if not isinstance(entries, Mapping) or "params" not in entries:
            raise TypeError(f"state_dict['param_groups'][{g}] must be a mapping with 'params'")
        indices = entries["params"]
        if not isinstance(indices, (list, tuple)):
            raise TypeError(f"state_dict['param_groups'][{g}]['params'] must list parameter indices")
        if len(indices) != len(group["params"]):
            raise ValueError(f"parameter group {g} of the state dict has {len(indices)} parameters, this optimizer's "
                             f"has {len(group['params'])}")
        for offset, index in enumerate(indices):
            index = check_count(f"parameter index in group {g}", index)
            if index in index_map:
                raise ValueError(f"parameter index {index} appears twice in state_dict['param_groups']")
            index_map[index] = start + offset
        start += len(indices)
        hyper_in = {key: entries[key] for key in names if key in entries}
        missing = [key for key in names if key not in hyper_in and key not in later]
        if missing:
            raise ValueError(f"parameter group {g} of the state dict lacks the hyper-parameters {missing}")
        hyper = kind._check_hyperparameters({key: hyper_in.get(key, later.get(key)) for key in names})
        extras = {as_scalar(key): check_group_entry(as_scalar(key), value) for key, value in entries.items()
                  if key not in names and key != "params"}
        new_entries.append({"params": group["params"], **hyper, **extras})
    return new_entries, index_map


def check_parameter_lists(state_dict: Mapping[str, Any], params: Sequence[Parameter]) -> None:
    """The snapshot's ``param_shapes`` and ``param_dtypes``, where given, are those of the parameters."""
    n = len(params)
    for field, actual in (
        ("param_shapes", [tuple(p.value.shape) for p in params]),
        ("param_dtypes", [numpy_dtype(p.value) for p in params]),
    ):
        if field not in state_dict:
            continue
        try:
            saved = list(state_dict[field])
            saved = [tuple(int(d) for d in entry) if field == "param_shapes" else np.dtype(entry)
                     for entry in saved]
        except (TypeError, ValueError):
            raise ValueError(
                f"state_dict[{field!r}] must list one {'shape' if field == 'param_shapes' else 'dtype'} "
                f"per parameter, got {state_dict[field]!r}"
            ) from None
        if len(saved) != n:
            raise ValueError(
                f"state_dict was saved for {len(saved)} parameters, this optimizer has {n}"
            )
        for i, (s, a) in enumerate(zip(saved, actual)):
            same = tuple(s) == a if field == "param_shapes" else np.dtype(s) == a
            if not same:
                raise ValueError(
                    f"parameter {i}: state_dict has {field[6:-1]} {s!r}, parameter has {a!r}"
                )
