"""The architecture record: a model as plain JSON, checked as untrusted input before anything is built.

A record is ``{"format": "nn_from_scratch.architecture", "version": 1,
"model": NODE}``, where a ``NODE`` is ``{"class": name, "config": {...}}``
and, for a container, ``"children": [[name, NODE], ...]`` (``name`` null, or
the position, for a node given without one).  :func:`describe` writes it
from :meth:`~nn_from_scratch.node.Node.config` and
:meth:`~nn_from_scratch.node.Node.children`; :func:`build` makes the model
again from the library alone (new weights: the state dict brings the
trained ones).

**Checks** (:func:`check_record`, run by :func:`build` before any node is
made; ``ValueError`` naming the field, ``model.children[1][1].config.stride``):
the record's shape; every class registered (:mod:`.classes`); at most
``max_nodes`` nodes and ``max_depth`` nested containers; in each config
only JSON values, nested at most 8 deep, strings of at most 1000
characters, lists of at most 100000 items, integers within ``2**31``; and a
bound on what a node may allocate: the product of a leaf's integer
arguments (its sizes; indices and axes left out) and scale factors, and of each shape a
Graph declares, may not exceed 16 times ``max_elements`` (when loading, the
bytes of data the file declares; at least 2**20); a node whose weights grow as a
product of its sizes (a recurrent layer's ``4H (I + H)``, attention's
``E (4E + ...)``) bounds them itself, its class's ``config_elements(config)``
read from the unchecked config, in place of the product.  A constructor's own refusal is raised again with the field
named.  A node met twice in a tree (a node shared by two containers) cannot
be described by a tree and is refused by :func:`describe`, naming it.  An
argument that is itself a node (a transformer layer's ``activation``, named by
its class's ``node_arguments``; ``config()`` gives the node) is that node's
record in the config, checked and built as every other node is.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Set, Tuple

from ..node import Node
from .classes import described_name, node_class

__all__ = ["FORMAT", "MAX_DEPTH", "MAX_NODES", "VERSION", "build", "check_record", "describe"]

FORMAT, VERSION = "nn_from_scratch.architecture", 1
MAX_DEPTH = 64
MAX_NODES = 10_000
_MAX_VALUE_DEPTH, _MAX_STRING, _MAX_LIST, _MAX_INT = 8, 1000, 100_000, 2 ** 31
#: float arguments that multiply what a node allocates (Upsample's)
_FACTORS = ("scale_factor",)
#: integer arguments that are positions or counts of inputs, not sizes of what a node allocates
_NOT_SIZES = {"scale_factor", "padding_idx", "axis", "dim", "dims", "start_dim", "end_dim", "dim0", "dim1",
              "num_inputs", "chunks"}


def describe(model: Node) -> Dict[str, Any]:
    """The architecture record of ``model``: every node's registered class and config, containers' children."""
    try:
        return {"format": FORMAT, "version": VERSION, "model": _record_of(model, "model", 0, set())}
    except ValueError as error:
        raise ValueError(f"describe: {error}") from None


def _record_of(node: Node, path: str, depth: int, seen: Set[int]) -> Dict[str, Any]:
    if depth > MAX_DEPTH:
        raise ValueError(f"containers nested deeper than {MAX_DEPTH} at {path}")
    if id(node) in seen:
        raise ValueError(f"{type(node).__name__} at {path} appears twice in the model; a record is a "
                         "tree, so a node shared by two containers cannot be described")
    seen.add(id(node))
    try:
        record: Dict[str, Any] = {"class": described_name(node), "config": node.config()}
    except (NotImplementedError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from None
    for key in getattr(type(node), "node_arguments", ()):  # an argument that is a node: its own record
        if isinstance(record["config"].get(key), Node):
            record["config"] = {**record["config"],
                                key: _record_of(record["config"][key], f"{path}.config.{key}", depth + 1, seen)}
    if _holds_children(type(node)):
        record["children"] = [[name, _record_of(child, f"{path}.{name}", depth + 1, seen)]
                              for name, child in node.children()]
    return record


def _holds_children(cls: type) -> bool:
    """Whether the class is built from children (its ``from_config`` is a container's)."""
    return isinstance(getattr(cls, "wiring", None), property)


def check_record(record: Any, *, max_elements: Optional[int] = None, max_nodes: int = MAX_NODES,
                 max_depth: int = MAX_DEPTH) -> None:
    """Raise ``ValueError`` naming the field unless ``record`` is a well-formed record within the bounds."""
    if not isinstance(record, dict):
        raise ValueError(f"the architecture must be a JSON object, got {type(record).__name__}")
    if set(record) != {"format", "version", "model"}:
        raise ValueError(f"the architecture must hold exactly format, version and model, got {_keys(record)}")
    if record["format"] != FORMAT or record["version"] != VERSION:
        raise ValueError(f"the architecture is not format {FORMAT!r} version {VERSION}: got "
                         f"{str(record['format'])[:100]!r} version {str(record['version'])[:20]}")
    limit = max(16 * int(max_elements), 1 << 20) if max_elements is not None else None
    stack: List[Tuple[Any, str, int]] = [(record["model"], "model", 0)]
    count = 0
    while stack:
        node, path, depth = stack.pop()
        count += 1
        if count > max_nodes:
            raise ValueError(f"the architecture holds more than {max_nodes} nodes")
        if depth > max_depth:
            raise ValueError(f"containers nested deeper than {max_depth} (at {_clipped(path)})")
        if not isinstance(node, dict) or not {"class", "config"} <= set(node) <= {"class", "config", "children"}:
            raise ValueError(f"{path} must be an object with class, config (and children), got "
                             f"{_keys(node) if isinstance(node, dict) else type(node).__name__}")
        try:
            cls = node_class(node["class"])
        except ValueError as error:
            raise ValueError(f"{path}.class: {error}") from None
        config = node["config"]
        if not isinstance(config, dict):
            raise ValueError(f"{path}.config must be an object, got {type(config).__name__}")
        _check_value(config, f"{path}.config", 0)
        children = node.get("children", [])
        if children and not _holds_children(cls):
            raise ValueError(f"{path}.children: {node['class']} holds no nodes")
        if not isinstance(children, list):
            raise ValueError(f"{path}.children must be a list, got {type(children).__name__}")
        for i, child in enumerate(children):
            if not (isinstance(child, list) and len(child) == 2 and (child[0] is None or isinstance(child[0], str))):
                raise ValueError(f"{path}.children[{i}] must be a pair [name or null, node]")
            stack.append((child[1], f"{path}.children[{i}][1]", depth + 1))
        for key in getattr(cls, "node_arguments", ()):  # an argument that is a node (an activation) is one too
            if isinstance(config.get(key), dict):
                stack.append((config[key], f"{path}.config.{key}", depth + 1))
        if limit is not None:
            _check_sizes(cls, config, f"{path}.config", limit)


def _clipped(path: str) -> str:
    """A field's path, its middle left out when it is long (deep nesting)."""
    return path if len(path) <= 160 else f"{path[:60]} ... {path[-80:]}"


def _keys(value: Dict[Any, Any]) -> str:
    return str(sorted(str(key)[:40] for key in list(value)[:10]))


def _check_value(value: Any, path: str, depth: int) -> None:
    """Plain JSON within the bounds: nesting, string length, list length, integer size."""
    if depth > _MAX_VALUE_DEPTH:
        raise ValueError(f"{path}: nested deeper than {_MAX_VALUE_DEPTH}")
    if value is None or isinstance(value, (bool, float)):
        return
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise ValueError(f"{path}: the integer {str(value)[:40]} is beyond {_MAX_INT}")
        return
    if isinstance(value, str):
        if len(value) > _MAX_STRING:
            raise ValueError(f"{path}: a string of {len(value)} characters, more than {_MAX_STRING}")
        return
    if isinstance(value, list):
        if len(value) > _MAX_LIST:
            raise ValueError(f"{path}: a list of {len(value)} items, more than {_MAX_LIST}")
        for i, item in enumerate(value):
            _check_value(item, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        if len(value) > _MAX_LIST:
            raise ValueError(f"{path}: an object of {len(value)} keys, more than {_MAX_LIST}")
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > _MAX_STRING:
                raise ValueError(f"{path}: keys must be strings of at most {_MAX_STRING} characters")
            _check_value(item, f"{path}.{key}", depth + 1)
        return
    raise ValueError(f"{path}: {type(value).__name__} is not a JSON value")


def _size_product(values: Any, floats: bool = False) -> int:
    """The product of the integers (each at least 1) in a value of lists, capped at 2**80; with ``floats``, of its
    floats rounded up too (a scale factor grows what a node allocates as a size does)."""
    product = 1
    stack = [values]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            product = min(product * max(abs(item), 1), 1 << 80)
        elif floats and isinstance(item, float) and math.isfinite(item):
            product = min(product * max(math.ceil(min(abs(item), 2.0 ** 80)), 1), 1 << 80)
    return product


def _check_sizes(cls: type, config: Dict[str, Any], path: str, limit: int) -> None:
    """Refuse a node whose sizes multiply past ``limit`` elements, before it allocates anything."""
    if _holds_children(cls):  # a Graph's declared shapes: its inputs are run on zeros, its constants made
        shapes = [(f"{path}.{group}[{i}].shape", spec.get("shape")) for group in ("inputs", "constants")
                  for i, spec in enumerate(config.get(group) or []) if isinstance(spec, dict)]
    elif getattr(cls, "config_elements", None) is not None:  # a node whose weights are sums of products says how
        shapes = [(path, [cls.config_elements(config)])]
    else:
        shapes = [(path, [value for key, value in config.items() if key not in _NOT_SIZES]
                   + [_size_product(config.get(key), floats=True) for key in _FACTORS])]
    for where, shape in shapes:
        size = _size_product(shape)
        if size > limit:
            raise ValueError(f"{where}: sizes whose product {size if size < 1 << 80 else 'beyond 2**80'} exceeds "
                             f"the {limit} elements the file's data allow")


def build(record: Any, *, max_elements: Optional[int] = None) -> Node:
    """The model a record describes, checked first (:func:`check_record`); new weights."""
    check_record(record, max_elements=max_elements)
    return _made(record["model"], "model")


def _made(node: Dict[str, Any], path: str) -> Node:
    children = [(name, _made(child, f"{path}.children[{i}][1]"))
                for i, (name, child) in enumerate(node.get("children", []))]
    cls = node_class(node["class"])
    config = node["config"]
    for key in getattr(cls, "node_arguments", ()):
        if isinstance(config.get(key), dict):
            config = {**config, key: _made(config[key], f"{path}.config.{key}")}
    try:
        result = cls.from_config(config, children)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, MemoryError) as error:
        raise ValueError(f"{path} ({node['class']}): {type(error).__name__}: {str(error)[:500]}") from None
    if not isinstance(result, Node):
        raise ValueError(f"{path}: {node['class']}.from_config gave {type(result).__name__}, not a Node")
    return result
