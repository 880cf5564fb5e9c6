"""A conv/matmul bias that Grappler moved past a residual add goes back right after the conv."""

from __future__ import annotations

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import (channel_vector, const_values, consumers, copy, make_const, nhwc,
                                    out_channels, prune, single_data_user, unique_name)
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2

_LINEAR = {"Conv2D", "DepthwiseConv2dNative", "MatMul"}
_SUM = {"AddN", "Add", "AddV2"}
_ADD = {"Add", "AddV2", "BiasAdd"}
_RANK = {"Conv2D": 4, "DepthwiseConv2dNative": 4, "MatMul": 2}


def _data_inputs(node: node_def_pb2.NodeDef) -> list[str] | None:
    """The inputs of ``node``, or None if it has a control input (such nodes are left alone)."""
    return None if any(i.startswith("^") for i in node.input) else list(node.input)


def restore_bias_add(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``Add(AddN(conv, r, ...), c)`` -> ``AddN(BiasAdd(conv, c), r, ...)`` for a constant per-channel ``c``.

    Grappler's arithmetic optimizer (its AddOpsRewrite stage) turns the residual
    ``Conv2D -> BiasAdd -> Add(r)`` into ``Conv2D -> AddN(r) -> AddV2(c)``: the sum
    of the non-constant terms first, the constant last. Same numbers, but a TF
    session's remapper fuses a conv with its bias (``_FusedConv2D``) only when the
    BiasAdd reads the conv directly: MobileNetV2 ran 10 of its 35 convs bare.

    Why a pass and not a Grappler setting: RewriterConfig has only an on/off switch
    for the whole arithmetic optimizer (its stages, ArithmeticOptimizerOptions, are
    not configurable from a ConfigProto). Turning it off avoids the hoist, and on
    MobileNetV2, ResNet50, EfficientNetB0, DenseNet121 and MobileNetV3Small the
    optimized graphs keep the same op counts. But it is not free on the conformance
    models (tests/conformance/zoo.py: time_distributed keeps 4 Transposes more,
    attention 1, shared_layers a duplicate Tanh), so it stays on and this pass
    undoes its one rewrite that hurts.

    A sum of two becomes ``AddV2`` again, as Keras wrote it (``Conv -> BiasAdd ->
    AddV2 -> Relu``, the residual form oneDNN's fusions look for). The constant
    goes to the first conv/matmul in the sum (the others had no bias of their own,
    or Grappler merged theirs into ``c``); a conv with no bias gets none. Only where
    the sum and the conv have no other consumer, for NHWC convs, and a constant that
    is a scalar or one value per output channel. A conv whose bias was folded into a
    directly following ``AddV2(Const)`` is ``fold_affine``'s case (it runs before).
    """
    out = copy(graph)
    keep = set(ctx.output_nodes)
    changed = True
    while changed:
        changed = False
        consts = const_values(out)
        users = consumers(out)
        by_name = {n.name: n for n in out.node}
        names = set(by_name)
        touched: set[str] = set()  # rewritten in this sweep: the consumer lists no longer hold for them
        for node in list(out.node):
            inputs = _data_inputs(node) if node.op in _ADD else None
            if not inputs or len(inputs) != 2:
                continue
            if node.op == "BiasAdd" and not nhwc(node):
                continue
            (a, a_port), (c, c_port) = (split_tensor(i) for i in inputs)
            if node.op != "BiasAdd" and a in consts:
                (a, a_port), (c, c_port) = (c, c_port), (a, a_port)
            total = by_name.get(a)
            if a_port or c_port or c not in consts or total is None or total.op not in _SUM \
                    or single_data_user(users, a, keep) is None or touched & {node.name, a}:
                continue
            terms = _data_inputs(total)
            if not terms:
                continue
            for k, term in enumerate(terms):
                linear = by_name.get(split_tensor(term)[0])
                if linear is None or linear.op not in _LINEAR or split_tensor(term)[1] or terms.count(term) > 1 \
                        or single_data_user(users, linear.name, keep) is None or linear.name in touched:
                    continue
                weights = consts.get(split_tensor(linear.input[1])[0])
                channels = out_channels(linear, weights) if weights is not None else None
                bias = channel_vector(consts[c], channels) if channels else None
                if bias is None or bias.dtype != weights.dtype or consts[c].ndim > _RANK[linear.op]:
                    continue
                bname = unique_name(names, f"{linear.name}/bias")
                out.node.append(make_const(unique_name(names, f"{bname}/value"), bias))
                bias_add = out.node.add(name=bname, op="BiasAdd", input=[linear.name, out.node[-1].name])
                bias_add.attr["T"].type = tf.as_dtype(bias.dtype).as_datatype_enum
                bias_add.attr["data_format"].s = b"NHWC"
                terms[k] = bname
                name = node.name
                node.CopyFrom(total)  # the sum takes the outer node's name: its consumers read that
                node.name = name
                del node.input[:]
                node.input.extend(terms)
                if node.op == "AddN" and len(terms) == 2:  # Keras' residual AddV2, the form fusions look for
                    node.op = "AddV2"
                    del node.attr["N"]
                touched.update((node.name, a, linear.name))
                changed = True
                break
        out = prune(out, ctx) if changed else out
    return out
