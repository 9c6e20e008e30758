"""Moving a model to torch and back in one call: ``to_torch(model)`` and ``from_torch(module)``.

:func:`to_torch` builds the equivalent ``torch.nn`` module with the same
weights, buffers and train/eval modes: each node's torch twin made from its
:meth:`~nn_from_scratch.node.Node.config` (the arguments have torch's names),
a Sequential as ``torch.nn.Sequential``, and every other container (Graph,
Residual, Parallel) as a :class:`~.torch_modules.Wired` module that runs its
wiring; nodes without a ``torch.nn`` twin (Add, Concat, Split, MatMul,
Reshape, ...) become the small modules of :mod:`.torch_modules`.  The state
dict keys are ours, so the weights move unchanged.  :func:`from_torch` is
the way back: ``torch.nn.Sequential`` and the layers of ``torch.nn`` that
the library has (their arguments read from the module's attributes), and the
modules :func:`to_torch` made.  The recurrent layers and cells, MultiheadAttention
and TransformerEncoderLayer (its ``activation`` a string or a layer) move to
and from their torch twins, whose state-dict keys are ours; torch's LSTM
nests its final states, ``(output, (h_n, c_n))``, where ours are three
outputs, and a container's call hands it the state as that tuple.  The
decoder block, the positional layers and ScaledDotProductAttention have no
exact ``torch.nn`` twin.  A node or module without a twin is refused with
``ValueError`` naming it.  torch is imported on first use.
"""
from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..backend import to_numpy
from ..containers import Sequential
from ..containers.wiring import wiring_of
from ..extras import require
from ..node import Node, plain
from ..registry import described_name, node_class

__all__ = ["from_torch", "to_torch"]

#: the library's name -> torch.nn's, where they differ
TORCH_NAMES = {"SoftMax": "Softmax", "LogSoftMax": "LogSoftmax", "GlobalAvgPool2d": "AdaptiveAvgPool2d",
               "Vectorization": "Flatten"}
OUR_NAMES = {"Softmax": "SoftMax", "LogSoftmax": "LogSoftMax"}
#: constructor arguments that are not read back from a torch module (initialisation, the course's sizes)
_NOT_READ = {"self", "init", "rng", "weight", "transpose_weight", "input_shape", "input_dim"}


def _torch_modules() -> Any:
    require("torch", "nn_from_scratch.interop")
    from . import torch_modules
    return torch_modules


def to_torch(model: Node) -> Any:
    """The ``torch.nn.Module`` equivalent to ``model``, with its weights, buffers and modes (see the module)."""
    tm = _torch_modules()
    return _to_torch(model, "model", tm)


def _config(node: Node, path: str) -> Tuple[str, Dict[str, Any]]:
    try:
        return described_name(node), node.config()
    except (NotImplementedError, ValueError, TypeError) as error:
        raise ValueError(f"to_torch: {path}: {error}") from None


def _to_torch(node: Node, path: str, tm: Any) -> Any:
    import torch

    name, config = _config(node, path)
    if isinstance(node, Sequential):
        return torch.nn.Sequential(OrderedDict((key, _to_torch(child, f"{path}.{key}", tm))
                                               for key, child in node.children()))
    wiring = wiring_of(node)
    if wiring is not None:
        key_of = {id(child): key for key, child in node.children()}
        modules = [(key, _to_torch(child, f"{path}.{key}", tm)) for key, child in node.children()]
        helpers, calls = [], []
        for call in wiring.calls:
            if id(call.node) not in key_of:  # a node made for the description: Residual's Add, Parallel's Concat
                if call.name in key_of.values():
                    raise ValueError(f"to_torch: {path}: a node is named {call.name!r}, as the wiring's own "
                                     f"{type(call.node).__name__}")
                helpers.append((call.name, _leaf(call.node, f"{path}.{call.name}", tm)))
            calls.append((key_of.get(id(call.node), call.name), call.inputs, call.outputs))
        constants = {key: torch.from_numpy(np.array(to_numpy(value), copy=True))
                     for key, value in wiring.constants.items()}
        return tm.Wired(name, config, modules, wiring.inputs, constants, calls, wiring.outputs, helpers)
    return _leaf(node, path, tm)


def _leaf(node: Node, path: str, tm: Any) -> Any:
    import torch

    name, config = _config(node, path)
    kwargs = {key: tuple(value) if isinstance(value, list) else value  # torch takes sizes as tuples
              for key, value in config.items() if key not in ("input_shape", "input_dim")}
    if isinstance(kwargs.get("dtype"), str):
        kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    if name in ("SoftMax", "LogSoftMax", "Softmin") and kwargs.get("dim") is None:
        kwargs["dim"] = -1  # the library's default: the last axis
    if name == "GlobalAvgPool2d":
        kwargs["output_size"] = 1
    if name in ("GroupNorm", "InstanceNorm2d"):
        if not kwargs.pop("bias", True):
            raise ValueError(f"to_torch: {path}: torch's {name} has no bias=False")
    if name == "TransformerEncoderLayer" and not isinstance(kwargs["activation"], str):  # a node's record
        kwargs["activation"] = _to_torch(node.activation, f"{path}.activation", tm)
    if name in tm.OPERATIONS:
        module = tm.OPERATIONS[name](**kwargs)
        module.node_config = config  # from_torch reads it back
    else:
        twin = getattr(torch.nn, TORCH_NAMES.get(name, name), None)
        if not (isinstance(twin, type) and issubclass(twin, torch.nn.Module)):
            raise ValueError(f"to_torch: {path}: {name} has no torch.nn twin")
        try:
            module = twin(**kwargs)
        except TypeError as error:
            raise ValueError(f"to_torch: {path}: torch.nn.{twin.__name__} does not take {config}: {error}") from None
    state = {key: torch.from_numpy(np.array(to_numpy(value), copy=True)) for key, value in node.state_dict().items()}
    module.load_state_dict(state)
    module.train(node.training)
    return module


def from_torch(module: Any) -> Node:
    """The library's model equivalent to a torch module, with its weights, buffers and modes (see the module)."""
    tm = _torch_modules()
    node = _from_torch(module, "module", tm)
    node.load_state_dict({key: value.detach().cpu().numpy() for key, value in module.state_dict().items()})
    return node


def _from_torch(module: Any, path: str, tm: Any) -> Node:
    import torch

    if isinstance(module, tm.Wired):
        children = [(key, _from_torch(getattr(module, key), f"{path}.{key}", tm)) for key in module.children_names]
        return node_class(module.kind).from_config(module.config, children)
    if type(module) is torch.nn.Sequential:
        return Sequential.from_config({}, [(key, _from_torch(child, f"{path}.{key}", tm))
                                           for key, child in module.named_children()])
    config: Optional[Dict[str, Any]] = getattr(module, "node_config", None)
    name = type(module).__name__
    if config is not None and type(module).__module__ == tm.__name__:
        node = node_class(name).from_config(config)
    else:
        if type(module).__module__.split(".")[:2] != ["torch", "nn"]:
            raise ValueError(f"from_torch: {path}: {type(module).__qualname__} is not a torch.nn layer; a module "
                             "with its own forward has no description to read (rebuild it with the library's nodes)")
        try:
            cls = node_class(OUR_NAMES.get(name, name))
        except ValueError:
            raise ValueError(f"from_torch: {path}: torch.nn.{name} has no twin in the library") from None
        reader = _READERS.get(cls.__name__, _read_config)
        node = cls.from_config(reader(cls, module, path, tm))
    node.training = module.training
    return node


def _read_config(cls: type, module: Any, path: str = "module", tm: Any = None) -> Dict[str, Any]:
    """The constructor arguments of ``cls`` read off a torch module's attributes (torch's names are ours)."""
    tensors = list(module.parameters(recurse=False)) + [b for b in module.buffers(recurse=False)
                                                        if b.is_floating_point()]
    config: Dict[str, Any] = {}
    for key, parameter in inspect.signature(cls.__init__).parameters.items():
        if key in _NOT_READ or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if key == "bias":  # a recurrent layer keeps the flag, the others the Parameter or None
            bias = getattr(module, "bias", None)
            config[key] = bias if isinstance(bias, bool) else bias is not None
        elif key == "dtype":
            if tensors:
                config[key] = str(tensors[0].dtype).replace("torch.", "")
        elif hasattr(module, key):
            value = getattr(module, key)
            config[key] = plain(list(value) if isinstance(value, tuple) else value)
    return config


def _read_attention(cls: type, module: Any, path: str, tm: Any) -> Dict[str, Any]:
    """MultiheadAttention's arguments: its biases are ``in_proj_bias`` and ``bias_k``, not ``bias``."""
    config = _read_config(cls, module, path, tm)
    config.update(bias=module.in_proj_bias is not None, add_bias_kv=module.bias_k is not None)
    return config


def _read_transformer(cls: type, module: Any, path: str, tm: Any) -> Dict[str, Any]:
    """TransformerEncoderLayer's arguments, read off its sublayers (torch keeps few of them itself)."""
    import torch

    activation = module.activation
    if activation is torch.nn.functional.relu or activation is torch.nn.functional.gelu:
        activation = activation.__name__
    elif isinstance(activation, torch.nn.Module):
        activation = _from_torch(activation, f"{path}.activation", tm)
    else:
        raise ValueError(f"from_torch: {path}: the activation {activation!r} is neither relu, gelu nor a torch.nn "
                         "layer")
    attention = module.self_attn
    return {"d_model": attention.embed_dim, "nhead": attention.num_heads,
            "dim_feedforward": module.linear1.out_features, "dropout": module.dropout.p, "activation": activation,
            "layer_norm_eps": module.norm1.eps, "batch_first": attention.batch_first,
            "norm_first": module.norm_first, "bias": module.linear1.bias is not None,
            "dtype": str(module.linear1.weight.dtype).replace("torch.", "")}


#: the layers whose arguments are not all attributes of the torch module
_READERS = {"MultiheadAttention": _read_attention, "TransformerEncoderLayer": _read_transformer}
