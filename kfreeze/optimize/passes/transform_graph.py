"""TensorFlow's TransformGraph folds FusedBatchNorm V1 into the conv before it."""

from __future__ import annotations

from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import transform
from tensorflow.core.framework import graph_pb2


def transform_graph(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """TensorFlow's TransformGraph folds FusedBatchNorm (V1) and BatchNormWithGlobalNormalization
    straight after a conv into its weights. V2/V3 are left to ``batch_norm_to_affine``.

    Runs only when such a batch norm is present: on other graphs it has nothing to
    fold, and its ``fold_batch_norms`` rejects a Conv -> Mul whose constant is
    [1, 1, 1, C] (EfficientNet), which ``fold_affine`` folds instead."""
    if not any(n.op in ("FusedBatchNorm", "BatchNormWithGlobalNormalization") for n in graph.node):
        return graph
    folded = transform(_unshared_weights(graph), ctx.input_nodes, ctx.output_nodes,
                       "fold_batch_norms fold_old_batch_norms")
    return _without_repeats(folded)


def _without_repeats(graph: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    """fold_old_batch_norms copies a node two folded convs both read (their input) into its output
    once per conv, under the same name: a GraphDef TensorFlow refuses ("Node 'x' is not unique").
    Identical repeats go; differing ones are a TransformGraph result kfreeze cannot use."""
    from kfreeze.errors import KfreezeError

    seen: dict[str, object] = {}
    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph.versions)
    out.library.CopyFrom(graph.library)
    for node in graph.node:
        if node.name in seen:
            if seen[node.name] != node:
                raise KfreezeError("optimize", f"TransformGraph wrote two different nodes named '{node.name}'",
                                   "report this graph")
            continue
        seen[node.name] = node
        out.node.add().CopyFrom(node)
    return out


_WEIGHTED = ("Conv2D", "DepthwiseConv2dNative", "MatMul")


def _unshared_weights(graph: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    """A weights constant read by several convs gets a copy per conv. fold_old_batch_norms scales a
    conv's weights where they are: two convs sharing one Const, concatenated before one batch norm
    (TF's own TestFoldFusedBatchNormsWithConcat), each had the shared weights scaled by the other's
    slice too (off by up to 33). dedupe_constants merges the copies that stay identical."""
    from kfreeze.optimize.graph import copy, unique_name

    readers: dict[str, list] = {}
    for node in graph.node:
        if node.op in _WEIGHTED and len(node.input) > 1:
            readers.setdefault(node.input[1].split(":")[0], []).append(node.name)
    shared = {name for name, users in readers.items() if len(users) > 1}
    if not shared:
        return graph
    out = copy(graph)
    by_name = {n.name: n for n in out.node}
    names = set(by_name)
    extra = []
    for node in out.node:
        src = node.input[1].split(":")[0] if node.op in _WEIGHTED and len(node.input) > 1 else None
        if src in shared and by_name[src].op == "Const":
            if src in names and readers[src][0] == node.name:
                continue  # the first reader keeps the original
            clone = type(by_name[src])()
            clone.CopyFrom(by_name[src])
            clone.name = unique_name(names, f"{src}/for_{node.name.rsplit('/', 1)[-1]}")
            extra.append(clone)
            node.input[1] = clone.name
    out.node.extend(extra)
    return out
