"""Identical ops on the same inputs become one."""

from __future__ import annotations

from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy, prune, rename_inputs
from tensorflow.core.framework import graph_pb2
from tensorflow.python.framework import op_def_registry

# Frames, queues and the like: merging two would change what runs, not just how often.
_NEVER = {"Const", "Placeholder", "PlaceholderWithDefault", "Enter", "RefEnter", "Exit", "RefExit", "Merge",
          "RefMerge", "Switch", "RefSwitch", "NextIteration", "RefNextIteration", "LoopCond", "NoOp"}


def merge_duplicates(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Two nodes with the same op, inputs (in order, control inputs as a set), attributes and device
    compute the same thing: the later one's readers read the first (tf2onnx's
    MergeDuplicatedNodesOptimizer; Grappler's arithmetic pass did not merge two Relu of one
    tensor). Repeated until nothing merges, so identical chains merge node by node. Stateful
    ops (random, variables, I/O) and control flow are never merged; an output keeps its node
    (two outputs are both kept). Constants are ``dedupe_constants``'."""
    keep = set(ctx.output_nodes) | set(ctx.input_nodes)
    out, changed = copy(graph), False
    while True:
        seen: dict[bytes, str] = {}
        mapping: dict[str, str] = {}
        for node in out.node:
            if node.op in _NEVER or _stateful(node.op):
                continue
            key = _key(node, mapping)
            first = seen.get(key)
            if first is None:
                seen[key] = node.name
            elif node.name not in keep:
                mapping[node.name] = first
            elif first not in keep:  # the output keeps its name: the earlier one merges into it
                mapping[first], seen[key] = node.name, node.name
        if not mapping:
            break
        # An earlier node merged into a later output: chains resolve to the final survivor.
        for name in mapping:
            while mapping[name] in mapping:
                mapping[name] = mapping[mapping[name]]
        rename_inputs(out, mapping)
        for node in out.node:  # a control input repeated after the renaming
            controls = [i for i in node.input if i.startswith("^")]
            if len(set(controls)) != len(controls):
                data = [i for i in node.input if not i.startswith("^")]
                del node.input[:]
                node.input.extend(data + list(dict.fromkeys(controls)))
        kept = [n for n in out.node if n.name not in mapping]
        del out.node[:]
        out.node.extend(kept)
        changed = True
    if not changed:
        return graph
    return prune(out, ctx)


def _key(node, mapping: dict[str, str]) -> bytes:
    data = [mapping.get(i.split(":")[0], i.split(":")[0]) + i[len(i.split(":")[0]):]
            for i in node.input if not i.startswith("^")]
    controls = sorted({mapping.get(i[1:], i[1:]) for i in node.input if i.startswith("^")})
    attrs = b"".join(k.encode() + node.attr[k].SerializeToString(deterministic=True)
                     for k in sorted(node.attr) if not k.startswith("_"))
    return "\x00".join([node.op, node.device, *data, "^", *controls]).encode() + b"\x01" + attrs


def _stateful(op: str) -> bool:
    op_def = op_def_registry.get(op)
    return op_def is None or op_def.is_stateful
