"""The torch modules a model moves into where ``torch.nn`` has no twin: a wired container and the small operations.

Imported only by :func:`nn_from_scratch.interop.to_torch` (it imports torch).
:class:`Wired` runs any container of the library from its wiring (Graph,
Residual, Parallel): its submodules are the container's nodes under the
container's names, so the state dict keys are the same as ours; it keeps
the container's class and config, so :func:`~nn_from_scratch.interop.from_torch`
brings it back.  The operation modules hold no parameters.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch
from torch import nn

__all__ = ["OPERATIONS", "Wired", "flat"]


class Wired(nn.Module):
    """A container of the library run from its wiring: each call's module on the values it reads."""

    def __init__(self, kind: str, config: Dict[str, Any], modules: Sequence[Tuple[str, nn.Module]],
                 inputs: Sequence[str], constants: Mapping[str, torch.Tensor],
                 calls: Sequence[Tuple[str, Sequence[str], Sequence[str]]], outputs: Sequence[str],
                 helpers: Sequence[Tuple[str, nn.Module]] = ()) -> None:
        super().__init__()
        self.kind, self.config = kind, config
        self.children_names: List[str] = [name for name, _ in modules]
        for name, module in modules:
            self.add_module(name, module)
        self.helpers = nn.ModuleDict(dict(helpers))  # the Add of a Residual, the Concat of a Parallel: no state
        for name, value in constants.items():
            self.register_buffer(name, value)
        self.inputs, self.calls, self.outputs = list(inputs), [tuple(call) for call in calls], list(outputs)

    def forward(self, *xs: torch.Tensor) -> Any:
        values: Dict[str, Any] = dict(zip(self.inputs, xs))
        values.update((name, buffer) for name, buffer in self.named_buffers(recurse=False))
        for name, ins, outs in self.calls:
            module = self.helpers[name] if name in self.helpers else getattr(self, name)
            y = module(*_arguments(module, [values[label] for label in ins]))
            values.update(zip(outs, flat(y)))
        ys = tuple(values[label] for label in self.outputs)
        return ys[0] if len(ys) == 1 else ys


def _arguments(module: nn.Module, args: List[Any]) -> List[Any]:
    """The library's inputs as torch's: an LSTM's state ``h, c`` is torch's tuple ``(h, c)``."""
    if isinstance(module, (nn.LSTM, nn.LSTMCell)) and len(args) == 3:
        return [args[0], (args[1], args[2])]
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)) and len(args) > 2 + isinstance(module, nn.LSTM):
        raise ValueError(f"torch.nn.{type(module).__name__} takes no lengths (torch packs the sequences instead)")
    return args


def flat(y: Any) -> Tuple[Any, ...]:
    """A module's outputs as the library's: one tuple, torch's nested ``(output, (h_n, c_n))`` flattened."""
    if not isinstance(y, tuple):
        return (y,)
    return tuple(item for part in y for item in flat(part))


class FirstOutput(nn.Module):
    """The first of the outputs before it: a recurrent layer's output sequence (``output, _ = lstm(x)``)."""

    def __init__(self, num_inputs: int) -> None:
        super().__init__()
        self.num_inputs = num_inputs

    def forward(self, *xs: Any) -> torch.Tensor:
        return flat(xs)[0]  # in a Sequential, torch's recurrent layer hands over one tuple


class Add(nn.Module):
    def __init__(self, num_inputs: int = 2) -> None:
        super().__init__()
        self.num_inputs = num_inputs

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        return total


class Subtract(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a - b


class Multiply(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b


class Divide(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a / b


class MatMul(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class _Axis(nn.Module):
    def __init__(self, axis: int = 0, **_: Any) -> None:
        super().__init__()
        self.axis = axis


class Concat(_Axis):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.axis)


class Stack(_Axis):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.stack(xs, dim=self.axis)


class Split(nn.Module):
    def __init__(self, sizes: Any, axis: int = 0) -> None:
        super().__init__()
        self.sizes, self.axis = sizes, axis

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(torch.split(x, self.sizes, dim=self.axis))


class Chunk(nn.Module):
    def __init__(self, chunks: int, axis: int = 0) -> None:
        super().__init__()
        self.chunks, self.axis = chunks, axis

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(torch.chunk(x, self.chunks, dim=self.axis))


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class Reshape(nn.Module):
    """The batch axis kept, the rest reshaped, as the library's Reshape."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = list(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


class Permute(nn.Module):
    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class Transpose(nn.Module):
    def __init__(self, dim0: int, dim1: int) -> None:
        super().__init__()
        self.dim0, self.dim1 = dim0, dim1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(self.dim0, self.dim1)


class _Reduction(nn.Module):
    def __init__(self, axis: Any = None, keepdims: bool = False) -> None:
        super().__init__()
        self.axis, self.keepdims = (tuple(axis) if isinstance(axis, list) else axis), keepdims


class Sum(_Reduction):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum() if self.axis is None and not self.keepdims else x.sum(dim=self.axis, keepdim=self.keepdims)


class Mean(_Reduction):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean() if self.axis is None and not self.keepdims else x.mean(dim=self.axis, keepdim=self.keepdims)


#: the library's nodes without a torch.nn twin, by class name: the module made from their config
OPERATIONS = {cls.__name__: cls for cls in (Add, Subtract, Multiply, Divide, MatMul, Concat, Stack, Split, Chunk,
                                            Scale, Reshape, Permute, Transpose, Sum, Mean, FirstOutput)}
