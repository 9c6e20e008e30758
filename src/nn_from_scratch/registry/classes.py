"""The registry of node classes: the names an architecture record may use, and the classes they build.

A model saved with its architecture names each node's class; loading builds
only classes found here, by that name, so a file cannot make the loader run
anything else.  The library's own nodes and containers are registered when
this module is imported; a node of one's own joins with
:func:`register_node` (as a decorator, or called on the class), after it
defines :meth:`~nn_from_scratch.node.Node.config` (and ``from_config`` where
its constructor does not take ``**config``).
"""
from __future__ import annotations

import threading
from typing import Callable, Dict, Optional, Type, TypeVar, Union, overload

from .. import containers, nodes
from ..node import Node

__all__ = ["described_name", "node_class", "register_node", "registered_name", "registered_nodes"]

N = TypeVar("N", bound=Type[Node])

_classes: Dict[str, Type[Node]] = {}
_lock = threading.Lock()
#: the abstract faces, which are never built themselves
_ABSTRACT = {"Node", "ElementwiseNode", "RowwiseNode"}


@overload
def register_node(cls: N, *, name: Optional[str] = None) -> N: ...


@overload
def register_node(cls: None = None, *, name: Optional[str] = None) -> Callable[[N], N]: ...


def register_node(cls: Optional[N] = None, *, name: Optional[str] = None) -> Union[N, Callable[[N], N]]:
    """Register a Node class under ``name`` (its class name by default), so that a saved model can name it.

    ``@register_node`` above the class, or ``register_node(MyNode)``; returns
    the class.  The class must define ``config()``; a name already taken by
    another class is refused (``ValueError``), registering the same class
    again is allowed.
    """
    def register(klass: N) -> N:
        if not isinstance(klass, type) or not issubclass(klass, Node):
            raise TypeError(f"register_node takes a Node class, got {klass!r}")
        if klass.config is Node.config:
            raise TypeError(f"register_node: {klass.__name__} must define config() (its constructor's arguments as "
                            "plain JSON values) to be rebuilt from a file")
        key = klass.__name__ if name is None else name
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"register_node: the name must be a Python identifier, got {key!r}")
        with _lock:
            other = _classes.get(key)
            if other is not None and other is not klass:
                raise ValueError(f"register_node: the name {key!r} is taken by {other.__module__}.{other.__qualname__}; "
                                 "give name=")
            _classes[key] = klass
        return klass
    return register if cls is None else register(cls)


def node_class(name: str) -> Type[Node]:
    """The class registered under ``name``, or ``ValueError`` saying so."""
    with _lock:
        klass = _classes.get(name) if isinstance(name, str) else None
    if klass is None:
        raise ValueError(f"{str(name)[:100]!r} is not a registered node class (register a node of your own with "
                         "nn_from_scratch.registry.register_node before loading)")
    return klass


def registered_name(cls: Type[Node]) -> str:
    """The name ``cls`` is registered under, or ``ValueError`` naming the class."""
    with _lock:
        for key, klass in _classes.items():
            if klass is cls:
                return key
    raise ValueError(f"{cls.__name__} is not a registered node class: define its config() and register it with "
                     "nn_from_scratch.registry.register_node to save a model holding it with its architecture")


def described_name(node: Node) -> str:
    """The registered name a node is saved under: its class's, or that of the class it names as
    ``described_class`` (a synchronised BatchNorm saves as its BatchNorm, read back in one process)."""
    return registered_name(getattr(type(node), "described_class", None) or type(node))


def registered_nodes() -> Dict[str, Type[Node]]:
    """A copy of the registry: name to class."""
    with _lock:
        return dict(_classes)


def _register_library() -> None:
    for module in (nodes, containers):
        for key in module.__all__:
            value = getattr(module, key)
            # a class without config() yet is left out (the completeness test in tests/test_describe.py names it)
            if isinstance(value, type) and issubclass(value, Node) and key not in _ABSTRACT \
                    and value.config is not Node.config:
                register_node(value)


_register_library()
