"""A model that describes itself: the registry of node classes, the architecture record, files that carry it.

``register_node`` (:mod:`.classes`) names the classes a file may build;
``describe`` and ``build`` (:mod:`.record`) turn a model into plain JSON and
back, checking the record as untrusted input; ``save_model`` and
``load_model`` (:mod:`.saving`) keep it with the weights, so that
``load_model(path)`` rebuilds a model in a process that has only the library.
"""
from .classes import described_name, node_class, register_node, registered_name, registered_nodes
from .record import build, check_record, describe
from .saving import ARCHITECTURE_KEY, load_architecture, load_model, save_model

__all__ = ["ARCHITECTURE_KEY", "build", "check_record", "describe", "described_name", "load_architecture", "load_model", "node_class",
           "register_node", "registered_name", "registered_nodes", "save_model"]
