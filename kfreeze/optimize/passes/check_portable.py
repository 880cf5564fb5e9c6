"""The last pass: the graph must hold only standard, deterministic ops."""

from __future__ import annotations

from kfreeze.errors import KfreezeError
from kfreeze.optimize.context import Context
from kfreeze.optimize.training import is_random_op
from tensorflow.core.framework import graph_pb2
from tensorflow.python.framework import op_def_registry


def check_portable(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Only ops registered in stock TensorFlow, no Grappler-internal '_' ops, and no random
    op: a RandomUniform left from training-mode dropout gives another answer on every call."""
    bad = sorted({n.op for n in graph.node if n.op.startswith("_") or op_def_registry.get(n.op) is None})
    if bad:
        raise KfreezeError("optimized graph", f"contains non-portable ops {', '.join(bad)}",
                           "report this model; kfreeze must not emit them")
    random = sorted(f"{n.name} ({n.op})" for n in graph.node if is_random_op(n.op))
    if random:
        raise KfreezeError("optimized graph", f"contains random ops, so it answers differently on every call: "
                           f"{', '.join(random[:5])}{' ...' if len(random) > 5 else ''}",
                           "cut the graph after the training-only part, or make its dropout/noise rate a "
                           "placeholder (kfreeze sets those to their inference values)")
    return graph
