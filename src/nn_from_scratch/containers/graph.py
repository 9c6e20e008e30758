r"""Graph: a functional model, built by calling nodes on placeholders (Keras' functional models, Torch7's nngraph).

::

    x = Input(64)                       # one sample's shape; the batch axis is implicit
    h = Linear(64, 64)(x)               # a node called on a placeholder records the call
    y = Add()(ReLU()(h), x)
    model = Graph(inputs=x, outputs=y)  # a Node: forward, backward, jacobian, state_dict

The graph is a directed acyclic graph of *uses*: a node called twice is one
node (one set of parameters, listed once) used twice, each use with its own
Context from ``run``.  With :math:`v_s` the value in slot :math:`s` and
:math:`f_k` the node of use :math:`k`,

.. math::
    v_{\text{out}(k)} = f_k\big(v_{\text{in}(k)}\big) \text{ in topological order}, \qquad
    \frac{\partial L}{\partial v_s} = \sum_{k:\ s \in \text{in}(k)} J_{k,s}^\top\,
        \frac{\partial L}{\partial v_{\text{out}(k)}},

so a value used by several nodes (fan-out) gets the sum of their gradients,
and a shared node's parameter gradient is the sum over its uses.  The
Jacobian is the chain rule over the graph, the sum over all paths from an
input to an output.  Forward, backward and the Jacobian walk a flat plan (no
recursion), so a chain of thousands of nodes runs.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np

from ..backend import namespace_of
from ..context import Context
from ..node import Node
from .graph_building import collect, listed, name_constants, name_nodes, refuse_dangling
from .placeholders import Constant, Input, Placeholder, shown
from .sequential import identity_jacobian
from .summary import Summary, count_once, render_table
from .wiring import Call, Wiring

__all__ = ["Constant", "Graph", "Input", "Placeholder"]


class Graph(Node):
    r"""A functional model: the nodes and wiring recorded by calling nodes on placeholders, as one Node.

    ``Graph(inputs=x, outputs=y)`` or ``Graph(inputs=[a, b], outputs=[y1, y2])``;
    with several inputs ``forward(a, b)`` takes them in order, with several
    outputs it returns a tuple and ``backward`` takes a tuple (None for an
    output the loss ignores).  The graph holds the nodes on a path from the
    inputs to the outputs.  A node computed from the graph's inputs but on no
    such path and in no other Graph (a *dangling* branch: a result left
    unused) is refused, naming the node, since it is most often a mistake;
    ``allow_dangling=True`` leaves such branches out instead, so that several
    graphs can share one set of placeholders (an encoder built from its
    autoencoder's calls before the autoencoder is built).

    **Names.**  Each distinct node has a name, its prefix in ``state_dict``
    (``"linear_0.weight"``): the one given at the call (``Linear(4, 4)(x,
    name="encoder")``) or in ``names={"encoder": node}``, else its type's
    stem and a count in the order of first use (``linear_0``, ``linear_1``,
    ``re_lu_0``).  A torch module with those attribute names loads the state dict.
    ``input_names`` lists the inputs' names (a dict of inputs to ``fit`` is keyed by them).

    **Masks, indices and constants.**  An input that every node takes as a
    constant input (the mask of Where or MaskedFill, the index of Gather)
    is a constant input of the graph: taken as given, its dtype kept (make
    its Input with ``dtype=bool`` or an integer type), and its gradient is
    None.  ``Input(shape, batched=False)`` is an input without a batch axis,
    given whole at each call and left out of the check that the inputs share
    one batch size.  ``Constant(array, name=...)`` bakes an array into the
    graph: the Graph keeps its own copy as a buffer (``state_dict`` key its
    name, else ``constant_<k>``), in its own dtype, saved, loaded and moved
    with the model; ``summary()`` lists it, a floating one counted as
    non-trainable.

    **Refused when the graph is built** (``ValueError`` naming the node or
    input): an output placeholder that does not come from the inputs (it
    needs an Input that is not listed: a placeholder of another graph), an
    input no output uses, a dangling branch (unless ``allow_dangling``),
    inputs that are not Inputs or are listed twice, a node with two names or
    a name given to two nodes.  A node that cannot
    take its input shape is refused at the call that records it.  A cycle
    cannot be built from placeholders (each refers to earlier ones only); a
    container made to contain itself afterwards is refused by
    :meth:`~nn_from_scratch.node.Node.named_nodes`.

    ``input_grad=False`` computes only the gradients that lead to a node
    with parameters.  ``jacobian()`` gives blocks ``y_o.shape + x_i.shape``
    (outputs outer, inputs inner, as the contract says).
    """

    def __init__(self, inputs: Union[Placeholder, Sequence[Placeholder]],
                 outputs: Union[Placeholder, Sequence[Placeholder]], *,
                 names: Optional[Mapping[str, Node]] = None, allow_dangling: bool = False) -> None:
        super().__init__()
        if not isinstance(allow_dangling, bool):
            raise TypeError(f"Graph: allow_dangling must be True or False, got {allow_dangling!r}")
        input_list, output_list = listed(inputs, "inputs"), listed(outputs, "outputs")
        slot_of: Dict[int, int] = {}
        for i, p in enumerate(input_list):
            if not p.is_input:
                what = "a Constant" if p.is_constant else f"the output of {p.use.node!r}"
                raise ValueError(f"Graph: input {i} is {what}, not an Input placeholder")
            if id(p) in slot_of:
                raise ValueError(f"Graph: input {i} ({p!r}) is listed twice")
            slot_of[id(p)] = i
        uses, constants = collect(output_list, slot_of)
        for p in constants:  # the constants' slots follow the inputs'
            slot_of[id(p)] = len(slot_of)
        reached = {id(p) for use in uses for p in use.inputs} | {id(p) for p in output_list}
        for i, p in enumerate(input_list):
            if id(p) not in reached:
                raise ValueError(f"Graph: input {i} ({p!r}) is not used by any output")
        node_names = name_nodes(uses, names)
        constant_names = name_constants(constants, set(node_names.values()))
        if not allow_dangling:
            refuse_dangling(input_list + constants, uses)

        # The flat plan: slots 0..k-1 are the inputs, then the constants, then the outputs of each use in
        # topological order.
        self._nodes: List[Node] = list(node_names)
        self._names: List[str] = list(node_names.values())
        index_of = {id(node): k for k, node in enumerate(self._nodes)}
        shapes: List[Tuple[Optional[int], ...]] = [p.shape for p in input_list + constants]
        labels: List[str] = [p.name or f"input_{i}" for i, p in enumerate(input_list)] + constant_names
        self._plan: List[Tuple[int, Tuple[int, ...], Tuple[int, ...]]] = []
        outputs_of: Dict[int, List[int]] = {}
        times_used: Dict[int, int] = {}
        self._use_labels: List[str] = []
        for use in uses:
            ins = []
            for p in use.inputs:
                ins.append(slot_of[id(p)] if p.use is None else outputs_of[id(p.use)][p.index or 0])
            count = len(use.made)
            outs = list(range(len(shapes), len(shapes) + count))
            outputs_of[id(use)] = outs
            times_used[id(use.node)] = times_used.get(id(use.node), 0) + 1
            node_name = node_names[use.node]
            if times_used[id(use.node)] > 1:  # a later use of a shared node: linear_0#2
                node_name = f"{node_name}#{times_used[id(use.node)]}"
            self._use_labels.append(node_name)
            for p in use.made:
                shapes.append(p.shape)
                labels.append(node_name if p.index is None else f"{node_name}[{p.index}]")
            self._plan.append((index_of[id(use.node)], tuple(ins), tuple(outs)))
        self._multi_output = [use.made[0].index is not None for use in uses]
        self._output_slots = tuple(slot_of[id(p)] if p.use is None else outputs_of[id(p.use)][p.index or 0]
                                   for p in output_list)
        self._slot_shapes, self._slot_labels = shapes, labels
        self.num_inputs = len(input_list)
        self.num_outputs = len(output_list)
        self.input_shapes = tuple(p.shape for p in input_list)
        self._input_dtypes = tuple(np.dtype(p.dtype).name for p in input_list)
        self._batched = tuple(p.batched for p in input_list)
        # An input is constant (no gradient, None) when every use of it is a constant input of its node.
        used_as_variable = set(self._output_slots)
        for node_index, ins, _ in self._plan:
            constant = self._nodes[node_index].constant_inputs
            used_as_variable.update(s for j, s in enumerate(ins) if j not in constant)
        self.constant_inputs = tuple(i for i in range(self.num_inputs) if i not in used_as_variable)
        in_graph = {id(use) for use in uses}
        for value in input_list + constants + [p for use in uses for p in use.made]:  # these can no longer dangle
            value.consumers = [use for use in value.consumers if id(use) not in in_graph]
        self._constant_names: List[str] = []
        for name, p in zip(constant_names, constants):  # last, so that a name cannot hide an attribute set above
            if hasattr(self, name):
                raise ValueError(f"Graph: the Constant name {name!r} is taken by the Graph's own attribute "
                                 f"{type(self).__name__}.{name}; name it otherwise")
            self.register_buffer(name, np.array(p.value, copy=True))  # the graph's own copy, saved with its state
            self._constant_names.append(name)

    # ---------------------------------------------------------- container
    def children(self) -> List[Tuple[str, Node]]:
        return list(zip(self._names, self._nodes))

    @property
    def input_names(self) -> Tuple[str, ...]:
        """The inputs' names in order: each Input's ``name``, ``input_<i>`` where none was given (read-only)."""
        return tuple(self._slot_labels[:self.num_inputs])

    @property
    def names(self) -> List[str]:
        """The nodes' names, in order of first use (the prefixes of ``state_dict`` keys)."""
        return list(self._names)

    def __getitem__(self, name: str) -> Node:
        """The node called ``name``."""
        try:
            return self._nodes[self._names.index(name)]
        except ValueError:
            raise KeyError(f"Graph has no node named {name!r}; its nodes are {self._names}") from None

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes)

    # ---------------------------------------------------------- the wiring, public and read-only
    @property
    def calls(self) -> Tuple[Call, ...]:
        """Each use of a node in an order that runs: ``(name, node, input labels, output labels)``.

        A label names one value: an input (:attr:`input_names`), a Constant
        (its name), or a use's output (the use's name, ``split_0[1]`` for the
        second output of a node of several).  A node used twice is called
        ``linear_0`` then ``linear_0#2``.
        """
        return tuple(Call(use, self._nodes[node_index], tuple(self._slot_labels[s] for s in ins),
                          tuple(self._slot_labels[s] for s in outs))
                     for use, (node_index, ins, outs) in zip(self._use_labels, self._plan))

    @property
    def output_names(self) -> Tuple[str, ...]:
        """The labels of the graph's outputs, in order."""
        return tuple(self._slot_labels[s] for s in self._output_slots)

    @property
    def wiring(self) -> Wiring:
        """Inputs, Constants, calls and outputs (see :mod:`~nn_from_scratch.containers.wiring`)."""
        return Wiring(self.input_names, {name: getattr(self, name) for name in self._constant_names}, self.calls,
                      self.output_names)

    # ---------------------------------------------------------- describing
    def config(self) -> Dict[str, Any]:
        """The wiring as plain values: inputs, constants (shape and dtype; the values are buffers), calls, outputs.

        Each call names its node by the node's name in :attr:`names`; the
        nodes themselves are :meth:`children`.
        """
        inputs = [{"name": name, "shape": [d for d in shape[1:]] if batched else list(shape), "dtype": dtype,
                   "batched": batched}
                  for name, shape, batched, dtype in zip(self.input_names, self.input_shapes, self._batched,
                                                         self._input_dtypes)]
        constants = [{"name": name, "shape": [int(d) for d in getattr(self, name).shape],
                      "dtype": str(getattr(self, name).dtype)} for name in self._constant_names]
        calls = [{"node": self._names[node_index], "inputs": [self._slot_labels[s] for s in ins],
                  "outputs": [self._slot_labels[s] for s in outs]} for node_index, ins, outs in self._plan]
        return {"inputs": inputs, "constants": constants, "calls": calls, "outputs": list(self.output_names)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], children: Sequence[Tuple[Optional[str], Node]] = ()) -> "Graph":
        """The Graph :meth:`config` describes, its nodes ``children`` (``(name, node)``), called again in order.

        The Constants are made as zeros of their shape and dtype: their values
        come with the state dict.  A call that makes other values than those
        described (a node of two outputs described with one) is refused.
        """
        nodes = dict(children)
        values: Dict[str, Placeholder] = {}
        inputs = []
        for spec in config["inputs"]:
            value = Input(spec["shape"], name=spec["name"], dtype=spec["dtype"], batched=spec["batched"])
            values[spec["name"]] = value
            inputs.append(value)
        for spec in config["constants"]:
            values[spec["name"]] = Constant(np.zeros(spec["shape"], dtype=spec["dtype"]), name=spec["name"])
        for k, spec in enumerate(config["calls"]):
            if spec["node"] not in nodes:
                raise ValueError(f"Graph.from_config: call {k} names the node {spec['node']!r}, which is not among "
                                 f"its nodes {sorted(nodes)}")
            missing = [label for label in spec["inputs"] if label not in values]
            if missing:
                raise ValueError(f"Graph.from_config: call {k} ({spec['node']}) reads {missing}, made by no earlier "
                                 "call or input")
            made = nodes[spec["node"]](*[values[label] for label in spec["inputs"]])
            made = made if isinstance(made, tuple) else (made,)
            if len(made) != len(spec["outputs"]):
                raise ValueError(f"Graph.from_config: call {k} ({spec['node']}) makes {len(made)} values, described "
                                 f"as {len(spec['outputs'])}")
            values.update(zip(spec["outputs"], made))
        missing = [label for label in config["outputs"] if label not in values]
        if missing:
            raise ValueError(f"Graph.from_config: the outputs {missing} are made by no call or input")
        used = {spec["node"] for spec in config["calls"]}
        unused = [name for name in nodes if name not in used]
        if unused:
            raise ValueError(f"Graph.from_config: the nodes {unused} are called nowhere")
        return cls(inputs, [values[label] for label in config["outputs"]],
                   names={name: node for name, node in nodes.items()})

    # ---------------------------------------------------------- the passes
    def _check_input(self, *xs: Any) -> None:
        """Each input against its Input's shape, and one batch size for the batched ones, before any node runs."""
        for i, (x, shape, batched) in enumerate(zip(xs, self.input_shapes, self._batched)):
            if x.ndim != len(shape) or any(e is not None and e != d for e, d in zip(shape, x.shape)):
                raise ValueError(
                    f"Graph input {i} ({self._slot_labels[i]}) must have shape {shown(shape)} "
                    f"({'None: any batch size' if batched else 'an input without a batch axis'}), got {x.shape}"
                )
        batched_inputs = [i for i, batched in enumerate(self._batched) if batched]
        if len({xs[i].shape[0] for i in batched_inputs}) > 1:
            sizes = ", ".join(f"{self._slot_labels[i]}: {xs[i].shape[0]}" for i in batched_inputs)
            raise ValueError(f"Graph inputs must share one batch size, got {sizes}")

    def _check_namespace(self, xp: Any) -> None:
        """The Constants must live in the inputs' namespace, as parameters must (they move with the model)."""
        super()._check_namespace(xp)
        for name in self._constant_names:
            own = namespace_of(getattr(self, name))
            if own is not xp:
                raise TypeError(f"Graph: the input is a {xp.__name__} array but the Constant {name} lives in "
                                f"{own.__name__}; move the model with nn_from_scratch.backend.set_backend")

    def _constants(self) -> List[Any]:
        return [getattr(self, name) for name in self._constant_names]

    def _forward(self, *args: Any) -> Any:
        *xs, ctx = args
        ctx.constants = self._constants()
        values: List[Any] = list(xs) + ctx.constants
        values += [None] * (len(self._slot_shapes) - len(values))
        steps = []
        for (node_index, ins, outs), multi in zip(self._plan, self._multi_output):
            step = self._nodes[node_index].run(*[values[s] for s in ins], update_state=ctx.update_state)
            steps.append(step)
            if multi:
                if not isinstance(step.y, tuple) or len(step.y) != len(outs):
                    raise ValueError(f"Graph: {self._names[node_index]} gave {type(step.y).__name__} outputs where "
                                     f"{len(outs)} were recorded when the graph was built")
                for s, y in zip(outs, step.y):
                    values[s] = y
            else:
                values[outs[0]] = step.y
        ctx.steps = steps
        ys = [values[s] for s in self._output_slots]
        return ys[0] if len(ys) == 1 else tuple(ys)

    def _reverse(self, g: Any, ctx: Context, input_grad: bool, parameters: bool) -> Any:
        r"""The backward walk: the plan in reverse, :math:`\partial L/\partial v_s = \sum_k J_{k,s}^\top g_k`.

        Each use hands the gradient of its outputs to its inputs' slots, where
        the parts of a value used several times (fan-out) are summed; a use
        that no gradient reaches is skipped (its contribution is zero), and a
        None input gradient (a constant input) adds nothing.  ``parameters``
        adds each node's parameter gradients (``backward_from``) or leaves
        them (``vjp_from``).  Without ``input_grad`` a use computes its input
        gradient only where a slot it reads leads back to a node with
        parameters.
        """
        slots = len(self._slot_shapes)
        leads_to_parameters = [False] * slots  # per slot: some node with parameters computed it (forward order)
        if not input_grad:
            for node_index, ins, outs in self._plan:
                reached = self._nodes[node_index].has_parameters() or any(leads_to_parameters[s] for s in ins)
                for s in outs:
                    leads_to_parameters[s] = reached
        grads: List[Any] = [None] * slots

        def add(slot: int, part: Any) -> None:
            grads[slot] = part if grads[slot] is None else grads[slot] + part

        for slot, part in zip(self._output_slots, g if self.num_outputs > 1 else (g,)):
            if part is not None:
                add(slot, part)
        for k in range(len(self._plan) - 1, -1, -1):
            node_index, ins, outs = self._plan[k]
            gy = [grads[s] for s in outs]
            if all(part is None for part in gy):
                continue  # no gradient reaches this use
            node, step = self._nodes[node_index], ctx.steps[k]
            gy = tuple(gy) if self._multi_output[k] else gy[0]
            need = input_grad or any(leads_to_parameters[s] for s in ins)
            if parameters:
                dx = node.backward_from(step, gy, input_grad=need)
            else:
                dx = node.vjp_from(step, gy) if need else None
            if dx is not None:
                for s, part in zip(ins, dx if len(ins) > 1 else (dx,)):
                    if part is not None:
                        add(s, part)
        if not input_grad:
            return None
        xp = ctx.xp
        result = [None if i in self.constant_inputs else (grads[i] if grads[i] is not None else xp.zeros_like(x))
                  for i, x in enumerate(ctx.inputs)]
        return result[0] if len(result) == 1 else tuple(result)

    def _backward(self, g: Any, ctx: Context, input_grad: bool) -> Any:
        return self._reverse(g, ctx, input_grad, parameters=True)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        """Input gradient only; parameter gradients are left untouched."""
        return self._reverse(g, ctx, True, parameters=False)

    def _jacobian(self, ctx: Context) -> Any:
        """The chain rule over the graph: ``J[s] = Σ_j J_local[j] · J[in_j]`` in topological order, per input."""
        xp = ctx.xp
        local: Dict[int, List[Tuple[Any, ...]]] = {}
        blocks: List[List[Optional[Any]]] = [[None] * self.num_inputs for _ in range(self.num_outputs)]
        values = list(ctx.inputs) + list(ctx.constants)
        values += [None] * (len(self._slot_shapes) - len(values))
        for k, (_, _, outs) in enumerate(self._plan):
            y = ctx.steps[k].y
            for s, out in zip(outs, y if self._multi_output[k] else (y,)):
                values[s] = out
        for i, x in enumerate(ctx.inputs):
            if i in self.constant_inputs:
                continue
            jac: List[Optional[Any]] = [None] * len(values)
            jac[i] = identity_jacobian(xp, x)
            for k, (node_index, ins, outs) in enumerate(self._plan):
                if all(jac[s] is None for s in ins):
                    continue
                if k not in local:
                    step = ctx.steps[k]
                    raw = self._nodes[node_index].jacobian_from(step)
                    local[k] = [block if len(ins) > 1 else (block,)
                                for block in (raw if self._multi_output[k] else (raw,))]
                for o, s in enumerate(outs):
                    total = None
                    for j, source in enumerate(ins):
                        part, upstream = local[k][o][j], jac[source]
                        if part is None or upstream is None:
                            continue
                        term = xp.tensordot(part, upstream, axes=values[source].ndim)
                        total = term if total is None else total + term
                    jac[s] = total
            for o, s in enumerate(self._output_slots):
                y = values[s]
                blocks[o][i] = jac[s] if jac[s] is not None else xp.zeros(tuple(y.shape) + tuple(x.shape),
                                                                           dtype=y.dtype)
        rows = [row[0] if self.num_inputs == 1 else tuple(row) for row in blocks]
        return rows[0] if self.num_outputs == 1 else tuple(rows)

    # ---------------------------------------------------------- reading it
    def summary(self) -> Summary:
        """A table of the graph: each use of a node with its name, its inputs, its output shape and parameter count.

        Shapes come from the trial forward made when the graph was built
        (``None``: any batch size); nothing runs and the model is unchanged.
        A node used again is marked ``(again)``; each Parameter (a shared
        node's, a tied weight) is counted at the first row that holds it, so
        the totals are those of :meth:`parameters`; a floating Constant
        counts as non-trainable.  Returns a
        :class:`~nn_from_scratch.containers.summary.Summary`: the table as a
        string, which a REPL shows as the table.
        """
        rows = [(self._slot_labels[i], "Input", "", shown(self._slot_shapes[i]), "0")
                for i in range(self.num_inputs)]
        trainable = buffers = 0
        for k, name in enumerate(self._constant_names):  # a floating constant counts as non-trainable, as a buffer
            value = getattr(self, name)
            size = math.prod(value.shape) if namespace_of(value).isdtype(value.dtype, "real floating") else 0
            buffers += size
            rows.append((name, "Constant", "", shown(self._slot_shapes[self.num_inputs + k]), f"{size:,}"))
        counted: Set[int] = set()
        seen: Set[int] = set()
        for (node_index, ins, outs), name in zip(self._plan, self._use_labels):
            node = self._nodes[node_index]
            kind = type(node).__name__ + (" (again)" if node_index in counted else "")
            counted.add(node_index)
            t, b = count_once(node, seen)
            trainable, buffers = trainable + t, buffers + b
            shape = ", ".join(shown(self._slot_shapes[s]) for s in outs)
            rows.append((name, kind, ", ".join(self._slot_labels[s] for s in ins), shape, f"{t + b:,}"))
        outputs = ", ".join(self._slot_labels[s] for s in self._output_slots)
        return render_table(f"Graph summary, outputs: {outputs}", ("Name", "Node", "Inputs", "Output shape", "Param #"),
                            rows, trainable, buffers)

    def extra_repr(self) -> str:
        lines, described = [], set()
        for node_index, ins, outs in self._plan:
            made = ", ".join(self._slot_labels[s] for s in outs)
            args = ", ".join(self._slot_labels[s] for s in ins)
            what = "" if node_index in described else f"  # {self._nodes[node_index]!r}"
            described.add(node_index)
            lines.append(f"  {made} = {self._names[node_index]}({args}){what}")
        inputs = ", ".join(self._slot_labels[:self.num_inputs])
        outputs = ", ".join(self._slot_labels[s] for s in self._output_slots)
        constants = f", constants=[{', '.join(self._constant_names)}]" if self._constant_names else ""
        return f"inputs=[{inputs}]{constants}, outputs=[{outputs}]\n" + "\n".join(lines) + "\n"
