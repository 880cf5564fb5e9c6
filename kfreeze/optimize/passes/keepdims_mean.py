"""Mean(keep_dims=False) + Reshape to the kept shape becomes Mean(keep_dims=True)."""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, copy, prune, shape_of, single_data_user, static_shapes, consumers
from tensorflow.core.framework import graph_pb2


def keepdims_mean(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``Reshape(Mean(x, axes, keep_dims=False), s)`` whose result is exactly the
    ``keep_dims=True`` shape becomes ``Mean(x, axes, keep_dims=True)``, under the Reshape's name."""
    out = copy(graph)
    keep = set(ctx.output_nodes)
    consts = const_values(out)
    users = consumers(out)
    by_name = {n.name: n for n in out.node}
    shapes = None
    changed = False
    for node in out.node:
        if node.op != "Reshape" or node.input[0].startswith("^"):
            continue
        mean = by_name.get(split_tensor(node.input[0])[0])
        if mean is None or mean.op != "Mean" or mean.attr["keep_dims"].b or split_tensor(node.input[0])[1]:
            continue
        if single_data_user(users, mean.name, keep) is None or split_tensor(mean.input[1])[0] not in consts:
            continue
        if shapes is None:
            shapes = static_shapes(out)
        x_shape, y_shape = shape_of(shapes, mean.input[0]), shape_of(shapes, node.name)
        if x_shape is None or y_shape is None or None in x_shape[1:] or None in y_shape[1:]:
            continue
        axes = {int(a) % len(x_shape) for a in np.asarray(consts[split_tensor(mean.input[1])[0]]).reshape(-1)}
        kept = [1 if k in axes else d for k, d in enumerate(x_shape)]
        if 0 in axes or kept[1:] != y_shape[1:] or x_shape[0] != y_shape[0] and y_shape[0] is not None:
            continue
        name = node.name
        node.CopyFrom(mean)
        node.name = name
        node.attr["keep_dims"].b = True
        changed = True
    return prune(out, ctx) if changed else graph
