"""Inference-mode dropout (an all-ones mask) becomes identity."""

from __future__ import annotations

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, copy, prune, rewire
from kfreeze.optimize.training import from_uniform
from tensorflow.core.framework import graph_pb2, node_def_pb2


def _bypass(graph: graph_pb2.GraphDef, node: node_def_pb2.NodeDef, source: str, keep: set[str]) -> None:
    """Make ``node`` disappear in favour of tensor ``source``; an output keeps its name as Identity."""
    if node.name in keep:
        dtype = node.attr["T"].type or node.attr["DstT"].type
        node.Clear()
        node.name, node.op = node.name, "Identity"
        node.input.append(source)
        node.attr["T"].type = dtype
        return
    rewire(graph, node.name, source)


def remove_dropout(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Dropout becomes identity, as it is at inference, whatever its (constant) rate.

    ``placeholder_defaults`` has set rate/keep_prob placeholders to 0/1; Grappler
    folds the scaling but cannot fold the random mask, because RandomUniform is
    not a constant. Recognised forms, with ``rate`` and ``keep`` constants:
      TF >= 1.13:  SelectV2(GreaterEqual(uniform, rate), x * 1/(1 - rate), 0)   -> x
                   x * 1/(1 - rate) * Cast(GreaterEqual(uniform, rate))         -> x
      TF <  1.13:  x / keep * Floor(keep + uniform)                             -> x
    A mask in another form stays, and ``check_portable`` then refuses the graph.
    """
    out = copy(graph)
    consts = const_values(out)
    by_name = {n.name: n for n in out.node}
    keep = set(ctx.output_nodes)

    def const_value(name):
        value = consts.get(split_tensor(name)[0])
        return None if value is None or value.size != 1 else float(value.reshape(()))

    def is_uniform(name):
        return from_uniform(by_name, name)

    def unscale(tensor: str, factor: float):
        """``tensor`` without dropout's 1/keep scaling: x for x * factor or x / (1/factor)."""
        if abs(factor - 1.0) <= 1e-6:
            return tensor
        node = by_name.get(split_tensor(tensor)[0])
        if node is None or len(node.input) != 2 or split_tensor(tensor)[1]:
            return None
        a, b = node.input
        if node.op == "Mul":
            for x, c in ((a, b), (b, a)):
                value = const_value(c)
                if value is not None and abs(value - factor) <= 1e-5 * abs(factor):
                    return x
        if node.op in ("RealDiv", "Div"):
            value = const_value(b)
            if value and abs(1.0 / value - factor) <= 1e-5 * abs(factor):
                return a
        return None

    masks: dict[str, float] = {}   # boolean keep-masks -> their scale 1/keep
    ones: dict[str, float] = {}    # float 0/1 masks -> their scale
    for node in out.node:
        if node.op == "GreaterEqual" and is_uniform(node.input[0]):
            rate = const_value(node.input[1])
            if rate is not None and rate < 1.0:
                masks[node.name] = 1.0 / (1.0 - max(rate, 0.0))
        elif node.op == "Floor":
            add = by_name.get(split_tensor(node.input[0])[0])
            if add is not None and add.op in ("Add", "AddV2") and len(add.input) == 2:
                a, b = add.input
                k = const_value(b) if is_uniform(a) else const_value(a) if is_uniform(b) else None
                if k is not None and 0.0 < k <= 1.0:
                    ones[node.name] = 1.0 / k
    changed = True
    while changed:  # Cast(mask) is a 0/1 mask with the same scale
        changed = False
        for node in out.node:
            src = split_tensor(node.input[0])[0] if node.input else None
            if node.op == "Cast" and src in masks and node.name not in ones:
                ones[node.name] = masks[src]
                changed = True
    if not (ones or masks):
        return out
    for node in list(out.node):
        srcs = [split_tensor(i)[0] for i in node.input if not i.startswith("^")]
        if node.op in ("SelectV2", "Select") and srcs and srcs[0] in masks:
            source = unscale(node.input[1], masks[srcs[0]])
        elif node.op == "Mul" and len(srcs) == 2 and (srcs[0] in ones or srcs[1] in ones):
            mask, other = (srcs[1], node.input[0]) if srcs[1] in ones else (srcs[0], node.input[1])
            source = unscale(other, ones[mask])
        else:
            continue
        if source is not None:
            _bypass(out, node, source, keep)
    return prune(out, ctx)
