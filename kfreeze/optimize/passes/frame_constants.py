"""New constants read inside a v1 while loop join the loop's frame."""

from __future__ import annotations

from kfreeze import graphio
from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy, unique_name
from tensorflow.core.framework import graph_pb2, node_def_pb2


def frame_constants(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Put each new constant that a v1 while loop (an RNN's) reads inside the loop's frame.

    A node in a loop runs in the loop's frame; TensorFlow puts a constant there
    by a control edge from a node of the loop (Grappler and the While lowering do
    so). A constant made by a hand-written pass (a folded bias, a static reshape
    shape) has no inputs, so it lands in the root frame and the session refuses
    the graph ("has inputs from different frames"). Such a constant gets a control
    edge from a loop node its consumer reads; one read both inside and outside
    a loop, or by two loops, gets a copy per frame.
    """
    in_loops = graphio.loop_nodes(graph)
    if not in_loops:
        return graph
    out = copy(graph)
    by_name = {n.name: n for n in out.node}
    names = set(by_name)
    # const name -> {anchor or None (outside): [(consumer, input index)]}
    uses: dict[str, dict] = {}
    for node in out.node:
        for i, inp in enumerate(node.input):
            src = split_tensor(inp)[0]
            const = by_name.get(src)
            if const is None or const.op != "Const" or const.input:
                continue
            anchor = None
            if node.name in in_loops and node.op not in ("Enter", "RefEnter"):
                anchor = next((split_tensor(j)[0] for j in node.input if split_tensor(j)[0] in in_loops), None)
            uses.setdefault(src, {}).setdefault(anchor, []).append((node, i))
    new_nodes = []
    for src in sorted(uses):
        groups = uses[src]
        anchors = sorted(a for a in groups if a is not None)
        if not anchors:
            continue
        if len(groups) == 1:
            by_name[src].input.append("^" + anchors[0])
            continue
        for anchor in anchors:
            clone = node_def_pb2.NodeDef()
            clone.CopyFrom(by_name[src])
            clone.name = unique_name(names, f"{src}/in_loop")
            clone.input.append("^" + anchor)
            new_nodes.append(clone)
            for node, i in groups[anchor]:
                inp = node.input[i]
                node.input[i] = ("^" if inp.startswith("^") else "") + clone.name + inp.lstrip("^")[len(src):]
    out.node.extend(new_nodes)
    return out
